//! The C ABI end to end: the committed header matches the Rust source, the C
//! test program passes against the tiny bundle (and is clean under valgrind
//! and under AddressSanitizer + LeakSanitizer), and the C and Python ctypes
//! examples write playable WAVs.
//!
//! `cargo test` builds `libchatterbox_ort.so` beside this test's executable
//! (`target/<profile>/deps/`); the C programs are compiled with the system
//! `cc` and linked to it.
//!
//! The tools these tests run (`cc` able to link `-fsanitize=address`,
//! `valgrind`, `python3`) are installed by `scripts/install-test-deps.sh`
//! (which `.ci/run` calls); a test whose tool is missing fails, naming that
//! script; none is skipped.
//! Regenerate the header after changing `src/ffi/` with
//! `CBX_BLESS=1 cargo test --test capi header`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "support/cdylib.rs"]
mod cdylib_path;
use cdylib_path::cdylib;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn bundle() -> PathBuf {
    let dir = root().join("onnx/tiny");
    assert!(
        dir.join("manifest.json").is_file(),
        "the tiny bundle {} is missing: export it with export/export_bundle.py",
        dir.display()
    );
    dir
}

/// A fresh scratch folder for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("capi")
        .join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("clearing the scratch folder");
    }
    std::fs::create_dir_all(&dir).expect("creating the scratch folder");
    dir
}

fn show(output: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

const INSTALL_DEPS: &str = "scripts/install-test-deps.sh";

/// Runs a command to completion. `LD_LIBRARY_PATH` (which `cargo test` sets
/// to folders that may hold a stale `libchatterbox_ort.so`) is removed so the
/// C programs load the library their rpath names. A program that cannot be
/// started (not installed) fails the test, naming the script that installs it.
fn run(command: &mut Command) -> Output {
    command
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {:?} ({e}); install the test tools with `{INSTALL_DEPS}` (as root)",
                command.get_program()
            )
        })
}

/// Compiles one C file against the header and links it to the cdylib.
fn compile_c(source: &Path, out_dir: &Path) -> PathBuf {
    compile_c_with(source, out_dir, &[])
}

/// [`compile_c`] with extra compiler flags (e.g. `-fsanitize=address`).
fn compile_c_with(source: &Path, out_dir: &Path, flags: &[&str]) -> PathBuf {
    let lib = cdylib();
    let libdir = lib.parent().expect("the library's folder");
    let stem = source
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("a C file name");
    let exe = out_dir.join(stem);
    let output = run(Command::new("cc")
        .args([
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-O1",
            "-g",
        ])
        .args(flags)
        .arg("-I")
        .arg(root().join("include"))
        .arg(source)
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(libdir)
        .arg("-lchatterbox_ort")
        .arg(format!("-Wl,-rpath,{}", libdir.display()))
        .args(["-lpthread", "-lm"]));
    assert!(
        output.status.success(),
        "compiling {} (flags {flags:?}); if a library or the sanitizer runtime is missing, \
         run `{INSTALL_DEPS}` (as root):\n{}",
        source.display(),
        show(&output)
    );
    exe
}

fn generated_header() -> String {
    let config =
        cbindgen::Config::from_file(root().join("cbindgen.toml")).expect("reading cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(root().join("src/ffi/mod.rs"))
        .generate()
        .expect("cbindgen could not generate the header");
    let mut bytes = Vec::new();
    bindings.write(&mut bytes);
    String::from_utf8(bytes).expect("cbindgen wrote UTF-8")
}

#[test]
fn header_matches_the_rust_source() {
    let fresh = generated_header();
    let path = root().join("include/chatterbox_ort.h");
    if std::env::var_os("CBX_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("writing the header");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != fresh {
        let out = scratch("header").join("chatterbox_ort.h");
        std::fs::write(&out, &fresh).expect("writing the fresh header");
        panic!(
            "{} is stale: `diff {} {}`; regenerate with `CBX_BLESS=1 cargo test --test capi header`",
            path.display(),
            path.display(),
            out.display()
        );
    }
}

#[test]
fn c_tests_pass() {
    let dir = scratch("c_tests");
    let exe = compile_c(&root().join("tests/c/capi_test.c"), &dir);
    let output = run(Command::new(&exe).arg(bundle()).arg(&dir));
    assert!(
        output.status.success(),
        "tests/c/capi_test.c failed:\n{}",
        show(&output)
    );
    println!("{}", String::from_utf8_lossy(&output.stdout));
}

/// Fails the test (never skips it) when `tool` cannot be run.
fn require(tool: &str) {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "`{tool}` is not installed, and this test needs it: run `{INSTALL_DEPS}` \
         (as root; it installs what the tests need on Debian/Ubuntu)"
    );
}

#[test]
fn c_tests_are_clean_under_valgrind() {
    require("valgrind");
    let dir = scratch("valgrind");
    let exe = compile_c(&root().join("tests/c/capi_test.c"), &dir);
    let log = dir.join("valgrind.log");
    let output = run(Command::new("valgrind")
        .args([
            "--tool=memcheck",
            "--error-exitcode=99",
            "--leak-check=full",
            "--show-leak-kinds=definite",
            "--errors-for-leak-kinds=definite",
            "--num-callers=40",
        ])
        .arg(format!(
            "--suppressions={}",
            root().join("tests/c/valgrind.supp").display()
        ))
        .arg(format!("--log-file={}", log.display()))
        .arg(&exe)
        .arg(bundle())
        .arg(&dir)
        .arg("quick"));
    let report = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        output.status.success(),
        "capi_test under valgrind failed:\n{}\n--- valgrind log ---\n{report}",
        show(&output)
    );
    let summary: Vec<&str> = report
        .lines()
        .filter(|l| {
            l.contains("ERROR SUMMARY")
                || l.contains("definitely lost")
                || l.contains("in use at exit")
        })
        .collect();
    println!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        summary.join("\n")
    );
}

/// The full C test under AddressSanitizer and LeakSanitizer.
///
/// Only the C program is instrumented (`-fsanitize=address`); the Rust cdylib
/// and ONNX Runtime are not, but ASan's interceptors replace `malloc`/`free`
/// and the `mem*`/`str*` functions for the whole process, so this catches C
/// misuse of the API (reading past a buffer the library returned, use after
/// `cbx_*_free`), double and invalid frees on either side, and — LSan at exit —
/// every unreachable allocation, in C, Rust or ONNX Runtime. Because the
/// executable itself links libasan, libasan is first in the load order: no
/// `LD_PRELOAD` and no `verify_asan_link_order=0` are needed (those are for an
/// uninstrumented executable loading an instrumented library). The run is
/// clean without suppressions (ONNX Runtime 1.32 on CPU frees or keeps
/// reachable all it allocates), so no LSan suppression file is used: a leak
/// anywhere fails the test.
#[test]
fn c_tests_are_clean_under_address_sanitizer() {
    let dir = scratch("asan");
    let exe = compile_c_with(
        &root().join("tests/c/capi_test.c"),
        &dir,
        &["-fsanitize=address", "-fno-omit-frame-pointer"],
    );
    let log = dir.join("asan");
    let output = run(Command::new(&exe)
        .arg(bundle())
        .arg(&dir)
        .env(
            "ASAN_OPTIONS",
            format!(
                "detect_leaks=1:halt_on_error=1:exitcode=86:abort_on_error=0:\
                 detect_stack_use_after_return=1:strict_string_checks=1:\
                 check_initialization_order=1:log_path={}",
                log.display()
            ),
        )
        .env("LSAN_OPTIONS", "exitcode=87:report_objects=1"));
    // log_path writes `asan.<pid>` only when something was reported.
    let reports: Vec<String> = std::fs::read_dir(&dir)
        .expect("reading the scratch folder")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("asan."))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(
        output.status.success() && reports.is_empty(),
        "capi_test under AddressSanitizer failed (exit 86: ASan error, 87: leak):\n{}\n\
         --- sanitizer reports ---\n{}",
        show(&output),
        reports.join("\n")
    );
    println!("{}", String::from_utf8_lossy(&output.stdout));
}

/// Reads a WAV written by an example and checks it holds `tokens` speech
/// tokens of audio (960 samples each).
fn check_wav(path: &Path, tokens: usize) {
    let mut reader =
        hound::WavReader::open(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let spec = reader.spec();
    assert_eq!(spec.sample_rate, 24_000, "{}", path.display());
    assert_eq!(spec.channels, 1, "{}", path.display());
    assert_eq!(spec.bits_per_sample, 16, "{}", path.display());
    let samples: Vec<i16> = reader
        .samples::<i16>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("decoding {}: {e}", path.display()));
    assert!(!samples.is_empty(), "{} has no samples", path.display());
    assert_eq!(
        samples.len(),
        960 * tokens,
        "{}: samples for {tokens} tokens",
        path.display()
    );
    assert!(
        samples.iter().any(|&s| s != 0),
        "{} is silent",
        path.display()
    );
}

#[test]
fn python_ctypes_example_writes_a_wav() {
    let dir = scratch("python");
    let wav = dir.join("hello.wav");
    let output = run(Command::new("python3")
        .arg(root().join("examples/python/synth.py"))
        .arg("--library")
        .arg(cdylib())
        .arg("--bundle")
        .arg(bundle())
        .arg("--out")
        .arg(&wav)
        .args([
            "--max-new-tokens",
            "4",
            "--min-new-tokens",
            "4",
            "--flow-steps",
            "2",
        ])
        .args(["--seed", "11", "--no-watermark"])
        .arg("Hello from Python."));
    assert!(
        output.status.success(),
        "examples/python/synth.py failed:\n{}",
        show(&output)
    );
    check_wav(&wav, 4);
}

#[test]
fn c_example_writes_a_wav() {
    let dir = scratch("c_example");
    let exe = compile_c(&root().join("examples/c/synth.c"), &dir);
    let wav = dir.join("hello.wav");
    let output = run(Command::new(&exe)
        .arg(bundle())
        .arg("Hello from C.")
        .arg(&wav)
        .args(["--max-new-tokens", "4", "--min-new-tokens", "4"]));
    assert!(
        output.status.success(),
        "examples/c/synth.c failed:\n{}",
        show(&output)
    );
    check_wav(&wav, 4);
}
