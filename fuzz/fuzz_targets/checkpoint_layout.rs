//! Bytes split into a model folder's weight files (safetensors files and headers, shard indexes,
//! `torch.save` archives) and opened as the loader does (`maestro::checkpoint::fuzz::layout`): a
//! panic, an abort or a runaway allocation is a finding.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tempfile::TempDir;

fn scratch() -> &'static TempDir {
    static DIR: OnceLock<TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a scratch folder"))
}

fuzz_target!(|bytes: &[u8]| {
    maestro::checkpoint::fuzz::layout(bytes, scratch().path());
});
