//! Peak memory of a tensor-by-tensor load of sharded safetensors, measured: the process's peak RSS
//! (VmHWM, reset through /proc/self/clear_refs) during the load stays within the weights it keeps
//! plus its largest stored tensor plus 10 %. One test in its own binary, so no other test's
//! allocations share the figure.
#![cfg(feature = "torch")]

use std::path::Path;

use maestro::checkpoint::{self, Checkpoint};
use maestro::musicgen::weights::WeightLoader;
use tch::{Device, Kind, Tensor};

const MIB: u64 = 1 << 20;

/// `VmRSS` or `VmHWM` of this process, in bytes.
fn status(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = text.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Writes `tensors` (name, dtype, element count) as two safetensors shards plus their index in
/// `dir`, with every element byte set to 1.
fn write_shards(dir: &Path, tensors: &[(&str, &str, usize, usize)]) {
    let mut weight_map = serde_json::Map::new();
    for (n, shard) in [&tensors[..tensors.len() / 2], &tensors[tensors.len() / 2..]].iter().enumerate() {
        let name = format!("model-{:05}-of-00002.safetensors", n + 1);
        let mut header = serde_json::Map::new();
        let mut offset = 0;
        for &(key, dtype, numel, element) in shard.iter() {
            let end = offset + numel * element;
            header.insert(
                key.into(),
                serde_json::json!({"dtype": dtype, "shape": [numel], "data_offsets": [offset, end]}),
            );
            weight_map.insert(key.into(), name.clone().into());
            offset = end;
        }
        let text = serde_json::to_vec(&header).unwrap();
        let mut file = std::fs::File::create(dir.join(&name)).unwrap();
        use std::io::Write;
        file.write_all(&(text.len() as u64).to_le_bytes()).unwrap();
        file.write_all(&text).unwrap();
        let chunk = vec![1u8; MIB as usize];
        for _ in 0..offset / MIB as usize {
            file.write_all(&chunk).unwrap();
        }
        file.write_all(&chunk[..offset % MIB as usize]).unwrap();
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

/// Loads every tensor of `dir` as f32 and returns (peak RSS growth, kept bytes, largest stored).
fn measure_load(dir: &Path) -> (u64, u64, u64) {
    let file = Checkpoint::open_dir(dir).unwrap();
    let loader = WeightLoader::new(&file, Device::Cpu);
    let largest = file.tensors().values().map(checkpoint::stored_bytes).max().unwrap();
    let mut names: Vec<&String> = file.tensors().keys().collect();
    names.sort();
    std::fs::write("/proc/self/clear_refs", "5").expect("peak RSS can be reset");
    let before = status("VmRSS:");
    let kept: Vec<Tensor> = names
        .iter()
        .map(|name| {
            let info = &file.tensors()[*name];
            loader.tensor(name, &[info.shape[0] as i64], Kind::Float).unwrap()
        })
        .collect();
    let peak = status("VmHWM:").saturating_sub(before);
    let bytes = kept.iter().map(|t| t.numel() as u64 * 4).sum();
    assert!(kept.iter().all(|t| t.double_value(&[0]) != 0.0), "the bytes were read");
    (peak, bytes, largest)
}

/// Loads `dir`, prints the figures and checks the bound; returns (peak growth, kept bytes).
fn check_load(dir: &Path, what: &str) -> (u64, u64) {
    let (peak, kept, largest) = measure_load(dir);
    eprintln!(
        "{what}: peak {} MiB for {} MiB kept, largest stored tensor {} MiB",
        peak / MIB,
        kept / MIB,
        largest / MIB
    );
    let bound = (kept + largest) as f64 * 1.1;
    assert!(peak as f64 <= bound, "{what}: peak {peak} over kept {kept} + largest {largest} + 10 %");
    (peak, kept)
}

#[test]
fn peak_rss_of_a_sharded_load_is_the_weights_plus_one_tensor() {
    let _warm = Tensor::ones([1024], (Kind::Float, Device::Cpu)).sum(Kind::Float).double_value(&[]);
    let dir = tempfile::tempdir().unwrap();
    // 224 MiB in f32 (largest 64 MiB), then the same sizes stored in f16 and loaded as f32.
    let m = MIB as usize / 4;
    write_shards(
        dir.path(),
        &[
            ("a", "F32", 16 * m, 4),
            ("b", "F32", 64 * m, 4),
            ("c", "F32", 32 * m, 4),
            ("d", "F32", 48 * m, 4),
            ("e", "F32", 16 * m, 4),
            ("f", "F32", 48 * m, 4),
        ],
    );
    let (peak, kept) = check_load(dir.path(), "f32 shards");
    assert!(peak >= kept / 2, "the measurement saw the load ({peak} of {kept})");

    let dir = tempfile::tempdir().unwrap();
    write_shards(
        dir.path(),
        &[("a", "F16", 16 * m, 2), ("b", "F16", 64 * m, 2), ("c", "F16", 32 * m, 2), ("d", "F16", 48 * m, 2)],
    );
    check_load(dir.path(), "f16 shards loaded as f32");
}
