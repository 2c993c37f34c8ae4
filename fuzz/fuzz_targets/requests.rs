//! Bytes decoded as every Maestro request type, then validated and converted as the handlers do
//! (`maestro::grpc::fuzz::check`): a panic or a broken limit is a finding.
#![no_main]

use std::{path::PathBuf, sync::OnceLock};

use libfuzzer_sys::fuzz_target;

fn roots() -> &'static [PathBuf] {
    static ROOTS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    ROOTS.get_or_init(|| vec![PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../models"))])
}

fuzz_target!(|bytes: &[u8]| {
    maestro::grpc::fuzz::check(bytes, roots());
});
