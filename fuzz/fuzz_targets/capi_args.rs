//! Fuzz target `capi_args`: see `chatterbox_ort_fuzz::checks::capi_args`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chatterbox_ort_fuzz::checks::capi_args(data));
