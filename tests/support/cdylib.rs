//! Locating the C library of this build, for the tests that load it from C or Python.

use std::path::PathBuf;

/// The cdylib of this build. `cargo test` compiles the library with all its
/// crate types into `target/<profile>/deps/` (beside the test's executable)
/// and copies the cdylib up to `target/<profile>/` only for `cargo build`, so
/// the fresh one is in `deps/`.
pub fn cdylib() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let deps = exe.parent().expect("the test executable's folder");
    let name = format!(
        "{}chatterbox_ort{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    [deps.join(&name), deps.join("..").join(&name)]
        .into_iter()
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{name} was not built in {}", deps.display()))
}
