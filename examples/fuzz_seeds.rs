//! Writes one valid encoded request of every type into a directory, as the seed corpus of the
//! `cargo fuzz` target (`make fuzz`).

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz/corpus/requests".into()));
    std::fs::create_dir_all(&dir)?;
    let seeds = maestro::grpc::fuzz::seeds();
    for (i, seed) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:02}")), seed)?;
    }
    println!("{} seeds in {}", seeds.len(), dir.display());
    Ok(())
}
