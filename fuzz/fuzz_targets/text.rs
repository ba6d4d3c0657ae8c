//! Fuzz target `text`: see `chatterbox_ort_fuzz::checks::text`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chatterbox_ort_fuzz::checks::text(data));
