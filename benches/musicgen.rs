//! MusicGen benchmark (see BENCHMARKS.md).
fn main() {
    println!("musicgen benchmark: not available yet");
}
