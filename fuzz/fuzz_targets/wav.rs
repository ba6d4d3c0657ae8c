//! Fuzz target `wav`: see `chatterbox_ort_fuzz::checks::wav`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chatterbox_ort_fuzz::checks::wav(data));
