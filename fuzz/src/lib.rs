//! The fuzz targets' shared code: [`checks`] holds every target's body (also replayed
//! by `tests/fuzz_regressions.rs` in the main crate).

pub mod checks;
