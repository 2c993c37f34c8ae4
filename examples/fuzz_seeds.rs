//! Writes the seed corpus of every `cargo fuzz` target (`make fuzz`) under a directory, one folder
//! per target (`fuzz/corpus/<target>/seed-NN`), built from the repository's fixtures.

use std::path::PathBuf;

#[path = "../tests/common/fuzz_seeds.rs"]
mod fuzz_seeds;

fn main() -> std::io::Result<()> {
    let root = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz/corpus".into()));
    for (target, seeds) in fuzz_seeds::all() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), seed)?;
        }
        println!("{} seeds in {}", seeds.len(), dir.display());
    }
    Ok(())
}
