//! Bytes read as a `torch.save` pickle (`data.pkl`) by the restricted reader
//! (`maestro::checkpoint::fuzz::pickle`): a panic, an abort or a runaway allocation is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    maestro::checkpoint::fuzz::pickle(bytes);
});
