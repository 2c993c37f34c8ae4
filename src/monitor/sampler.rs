//! Reading the machine: the [`Sampler`] trait and its real implementation over sysinfo, the cgroup
//! files, `/proc/self` and NVML (`nvml`: the GPUs, sensor by sensor).
//!
//! A sampler runs on the monitor's dedicated thread and may block. It refreshes only what it reports:
//! memory, CPU and this one process, never the whole process table.

use std::{
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock, PoisonError},
};

use sysinfo::{
    CpuRefreshKind, MemoryRefreshKind, Pid, Process, ProcessRefreshKind, ProcessesToUpdate, RefreshKind,
    System,
};

use super::snapshot::{ContainerStats, GpuStats, HostStats, ProcessStats};

mod nvml;

pub use nvml::NvmlSource;

/// One reading of every source; a failed source carries its error and the monitor keeps its last
/// good figures, marked stale. A single sensor that fails inside a source that reads (a GPU's
/// temperature, the load average) is `None` in that source's figures.
#[derive(Debug, Clone)]
pub struct Reading {
    /// Host memory and CPU.
    pub host: Result<HostStats, String>,
    /// The cgroup (`Ok(None)` when the process is in no memory cgroup).
    pub container: Result<Option<ContainerStats>, String>,
    /// The server process.
    pub process: Result<ProcessStats, String>,
    /// GPUs (an unavailable NVML is not an error: `available = false` with the reason).
    pub gpu: Result<GpuStats, String>,
}

/// Something that reads resources. Tests inject scripted sequences through this trait.
pub trait Sampler: Send + 'static {
    /// Takes one reading. May block; runs on the sampler thread.
    fn sample(&mut self) -> Reading;
}

/// The real machine.
pub struct SystemSampler {
    system: System,
    cgroup: Option<Cgroup>,
    gpus: Box<dyn GpuSource>,
}

impl SystemSampler {
    /// Opens sysinfo, finds this process's cgroup and initialises NVML (once; its absence is logged
    /// once and reported in every snapshot).
    pub fn new() -> Self {
        Self::with_gpus(Box::new(NvmlSource::init()))
    }

    /// The sysinfo handle; sysinfo only fails here on platforms it does not support.
    fn system() -> System {
        let refresh = RefreshKind::nothing()
            .with_memory(MemoryRefreshKind::everything())
            .with_cpu(CpuRefreshKind::nothing().with_usage());
        System::new_with_specifics(refresh).expect("sysinfo supports this platform")
    }

    /// Uses another GPU source (tests, or a machine with a different GPU library).
    pub fn with_gpus(gpus: Box<dyn GpuSource>) -> Self {
        Self { system: Self::system(), cgroup: Cgroup::find(), gpus }
    }

    fn host(&mut self) -> HostStats {
        self.system.refresh_memory();
        self.system.refresh_cpu_usage();
        let load = System::load_average().ok().map(|l| [l.one, l.five, l.fifteen]);
        HostStats {
            memory_total_bytes: self.system.total_memory(),
            memory_available_bytes: self.system.available_memory(),
            memory_used_bytes: self.system.used_memory(),
            swap_total_bytes: self.system.total_swap(),
            swap_used_bytes: self.system.used_swap(),
            cpu_percent: f64::from(self.system.global_cpu_usage()),
            cpu_per_core_percent: self.system.cpus().iter().map(|c| f64::from(c.usage())).collect(),
            load_average: load,
        }
    }

    fn process(&mut self) -> Result<ProcessStats, String> {
        let kind = ProcessRefreshKind::nothing().with_memory().with_cpu();
        let p = own_process(&mut self.system, kind).ok_or("own process not found in /proc")?;
        Ok(ProcessStats {
            pid: p.pid().as_u32(),
            rss_bytes: p.memory(),
            virtual_bytes: p.virtual_memory(),
            cpu_percent: f64::from(p.cpu_usage()),
            threads: threads(),
        })
    }
}

impl Default for SystemSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl Sampler for SystemSampler {
    fn sample(&mut self) -> Reading {
        Reading {
            host: Ok(self.host()),
            container: self.cgroup.as_ref().map(Cgroup::read).transpose(),
            process: self.process(),
            gpu: self.gpus.read(),
        }
    }
}

/// This process's resident set in bytes, read as the sampler reads it (snapshots report the same
/// figure as `process.rss_bytes`), for code that needs it between samples: a model load's growth, a
/// generation's peak. 0 when sysinfo cannot read this process.
pub fn rss_bytes() -> u64 {
    // One handle for every caller: sysinfo keeps per-process state between refreshes.
    static OWN: OnceLock<Mutex<Option<System>>> = OnceLock::new();
    let mut own =
        OWN.get_or_init(|| Mutex::new(System::new().ok())).lock().unwrap_or_else(PoisonError::into_inner);
    let memory = ProcessRefreshKind::nothing().with_memory();
    own.as_mut().and_then(|system| own_process(system, memory)).map_or(0, Process::memory)
}

/// Refreshes `kind` of this process, and nothing else, in `system`.
fn own_process(system: &mut System, kind: ProcessRefreshKind) -> Option<&Process> {
    let pid = Pid::from_u32(std::process::id());
    system.refresh_processes_specifics(ProcessesToUpdate::Some(&[pid]), true, kind);
    system.process(pid)
}

/// The number of threads of this process, from `/proc/self/status`.
fn threads() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse().ok())
}

/// This process's memory cgroup.
#[derive(Debug, Clone)]
struct Cgroup {
    version: &'static str,
    limit: PathBuf,
    usage: PathBuf,
}

impl Cgroup {
    fn find() -> Option<Cgroup> {
        let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        Self::from_proc(&text, Path::new("/sys/fs/cgroup"))
    }

    /// Locates the memory files from `/proc/self/cgroup` under a cgroup mount.
    fn from_proc(text: &str, mount: &Path) -> Option<Cgroup> {
        for line in text.lines() {
            let mut parts = line.splitn(3, ':');
            let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let rel = path.trim_start_matches('/');
            if id == "0" && controllers.is_empty() {
                let dir = mount.join(rel);
                if dir.join("memory.max").exists() {
                    return Some(Cgroup {
                        version: "v2",
                        limit: dir.join("memory.max"),
                        usage: dir.join("memory.current"),
                    });
                }
            } else if controllers.split(',').any(|c| c == "memory") {
                let dir = mount.join("memory").join(rel);
                let dir = if dir.exists() { dir } else { mount.join("memory") };
                if dir.join("memory.limit_in_bytes").exists() {
                    return Some(Cgroup {
                        version: "v1",
                        limit: dir.join("memory.limit_in_bytes"),
                        usage: dir.join("memory.usage_in_bytes"),
                    });
                }
            }
        }
        None
    }

    fn read(&self) -> Result<ContainerStats, String> {
        let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
        let limit = read(&self.limit)?;
        let usage = read(&self.usage)?;
        let limit = match limit.trim() {
            "max" => None,
            // cgroup v1 writes "no limit" as a huge page-aligned number.
            v => v.parse::<u64>().ok().filter(|&l| l < (1 << 60)),
        };
        Ok(ContainerStats {
            cgroup_version: self.version,
            memory_limit_bytes: limit,
            memory_usage_bytes: usage.trim().parse().map_err(|e| format!("{}: {e}", self.usage.display()))?,
        })
    }
}

/// Where GPU figures come from.
pub trait GpuSource: Send {
    /// Reads every device, or says why there are none.
    fn read(&mut self) -> Result<GpuStats, String>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup_v2_and_v1_memory_files() {
        let dir = tempfile::tempdir().unwrap();
        let v2 = dir.path().join("user.slice/app");
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(v2.join("memory.max"), "1073741824\n").unwrap();
        std::fs::write(v2.join("memory.current"), "1000\n").unwrap();
        let cg = Cgroup::from_proc("0::/user.slice/app\n", dir.path()).unwrap();
        let stats = cg.read().unwrap();
        assert_eq!(
            (stats.cgroup_version, stats.memory_limit_bytes, stats.memory_usage_bytes),
            ("v2", Some(1 << 30), 1000)
        );
        std::fs::write(v2.join("memory.max"), "max\n").unwrap();
        assert_eq!(cg.read().unwrap().memory_limit_bytes, None);

        let v1 = dir.path().join("memory/docker/abc");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(v1.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        std::fs::write(v1.join("memory.usage_in_bytes"), "5\n").unwrap();
        let cg = Cgroup::from_proc("5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n", dir.path()).unwrap();
        let stats = cg.read().unwrap();
        assert_eq!((stats.cgroup_version, stats.memory_limit_bytes), ("v1", None));
    }

    #[test]
    fn real_sampler_reads_this_machine() {
        let mut s = SystemSampler::new();
        let r = s.sample();
        let host = r.host.unwrap();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
        let kib: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        assert_eq!(host.memory_total_bytes, kib * 1024);
        let p = r.process.unwrap();
        assert_eq!(p.pid, std::process::id());
        assert!(p.rss_bytes > 0 && p.threads >= Some(1));
        // The standalone reading is the same measure: it grows with memory this process touches.
        let before = rss_bytes();
        let touched = std::hint::black_box(vec![1u8; 64 << 20]);
        let after = rss_bytes();
        assert!(before > 0 && after >= before + (32 << 20), "{before} -> {after} with 64 MiB touched");
        drop(touched);
        let gpu = r.gpu.unwrap();
        if !gpu.available {
            assert!(!gpu.unavailable_reason.is_empty());
        }
        // On an NVIDIA machine (run this test binary there: it needs no libtorch when built with
        // --no-default-features) every device must report real figures.
        for d in &gpu.devices {
            assert!(!d.name.is_empty() && !d.uuid.is_empty(), "{d:?}");
            let (total, used) = (d.memory_total_bytes.unwrap_or(0), d.memory_used_bytes.unwrap_or(u64::MAX));
            assert!(total > 0 && used <= total, "{d:?}");
            assert!(d.compute_capability.0 >= 3, "{d:?}");
            assert!(d.temperature_celsius > Some(0.0) && d.power_limit_watts > Some(0.0), "{d:?}");
        }
    }
}
