//! Bytes decoded as a request's audio (PCM or WAV, with a fuzzed claimed rate and channel count) and
//! conformed to a model's rate and channels (`maestro::audio_input::fuzz::check`): a panic, a
//! broken limit or a runaway allocation is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    maestro::audio_input::fuzz::check(bytes);
});
