//! Bytes decoded as every Maestro request type, then validated and converted as the handlers do
//! (`maestro::grpc::fuzz::check`): a panic or a broken limit is a finding.
#![no_main]

use std::{path::PathBuf, sync::OnceLock};

use libfuzzer_sys::fuzz_target;
use maestro::resources::model_id::ModelRoots;

/// The repository's models, and its fixtures standing in for a hub cache (ids with `@REV` reach the
/// hub cache's resolution).
fn roots() -> &'static ModelRoots {
    static ROOTS: OnceLock<ModelRoots> = OnceLock::new();
    ROOTS.get_or_init(|| ModelRoots {
        dirs: vec![PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../models"))],
        hub_cache: Some(PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures"))),
    })
}

fuzz_target!(|bytes: &[u8]| {
    maestro::grpc::fuzz::check(bytes, roots());
});
