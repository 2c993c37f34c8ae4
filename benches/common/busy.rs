//! A busy neighbour for the benchmarks: a plain busy loop in another process, pinned to core 1.

/// The running loop, killed on drop.
pub struct Busy(std::process::Child);

impl Busy {
    /// Starts the loop; `None` where `taskset` cannot.
    pub fn start() -> Option<Self> {
        let child = std::process::Command::new("taskset")
            .args(["-c", "1", "sh", "-c", "while :; do :; done"])
            .spawn()
            .ok()?;
        // Let it reach its core before the timing starts.
        std::thread::sleep(std::time::Duration::from_millis(200));
        Some(Self(child))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
