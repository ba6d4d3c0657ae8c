//! Replays every saved fuzz crash (`fuzz/regressions/<target>/*`) and every committed
//! seed (`fuzz/corpus/<target>/*`) through the code path of its fuzz target, so
//! `cargo test` keeps found crashes fixed without the fuzzer. The targets' bodies live
//! in `fuzz/src/checks.rs`, shared with the fuzz binaries (see `scripts/fuzz.sh`).

#[path = "../fuzz/src/checks.rs"]
mod checks;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// The files of `fuzz/<kind>/<target>/`, sorted (none when the folder is missing).
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("reading a fuzz folder").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every input of `target` (regressions, then seeds); fails naming each input
/// that panics.
fn replay(target: &str) {
    let mut failures = Vec::new();
    let mut count = 0;
    for kind in ["regressions", "corpus"] {
        for file in inputs(kind, target) {
            let data = std::fs::read(&file).expect("reading a fuzz input");
            count += 1;
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| checks::run(target, &data))) {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{}: {msg}", file.display()));
            }
        }
    }
    assert!(
        count > 0,
        "no seeds or regressions for fuzz target `{target}`"
    );
    assert!(
        failures.is_empty(),
        "fuzz target `{target}`: {} of {count} inputs fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn wav_inputs_replay_cleanly() {
    replay("wav");
}

#[test]
fn voice_file_inputs_replay_cleanly() {
    replay("voice_file");
}

#[test]
fn manifest_inputs_replay_cleanly() {
    replay("manifest");
}

#[test]
fn text_inputs_replay_cleanly() {
    replay("text");
}

#[test]
fn capi_args_inputs_replay_cleanly() {
    replay("capi_args");
}

#[test]
fn every_regression_folder_is_a_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    for entry in std::fs::read_dir(&root).into_iter().flatten() {
        let entry = entry.expect("reading fuzz/regressions");
        if !entry.path().is_dir() {
            continue;
        }
        let name = entry.file_name();
        let name = name.to_string_lossy();
        assert!(
            checks::TARGETS.contains(&name.as_ref()),
            "fuzz/regressions/{name} is not a fuzz target ({:?})",
            checks::TARGETS
        );
    }
}
