//! Fuzz target `voice_file`: see `chatterbox_ort_fuzz::checks::voice_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chatterbox_ort_fuzz::checks::voice_file(data));
