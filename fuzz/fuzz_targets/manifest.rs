//! Fuzz target `manifest`: see `chatterbox_ort_fuzz::checks::manifest`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chatterbox_ort_fuzz::checks::manifest(data));
