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

/// `examples/python/synth.py` on `bundle_dir` with `extra` arguments.
fn python_example(bundle_dir: &Path, wav: &Path, extra: &[&str]) -> Output {
    run(Command::new("python3")
        .arg(root().join("examples/python/synth.py"))
        .arg("--library")
        .arg(cdylib())
        .arg("--bundle")
        .arg(bundle_dir)
        .arg("--out")
        .arg(wav)
        .args(extra))
}

#[test]
fn python_ctypes_example_speaks_a_language_of_a_multilingual_bundle() {
    let dir = scratch("python_mtl");
    let wav = dir.join("bonjour.wav");
    let mtl = root().join("onnx/tiny-multilingual");
    let args = [
        "--max-new-tokens",
        "4",
        "--min-new-tokens",
        "4",
        "--flow-steps",
        "1",
        "--no-watermark",
    ];
    let output = python_example(
        &mtl,
        &wav,
        &[&args[..], &["--language", "fr", "Bonjour."]].concat(),
    );
    assert!(
        output.status.success(),
        "synth.py --language fr failed:\n{}",
        show(&output)
    );
    check_wav(&wav, 4);
    // Without a language the library refuses, naming the field.
    let output = python_example(
        &mtl,
        &dir.join("none.wav"),
        &[&args[..], &["Bonjour."]].concat(),
    );
    assert!(!output.status.success());
    assert!(show(&output).contains("language"), "{}", show(&output));
}

#[test]
fn python_ctypes_example_writes_a_wav() {
    let dir = scratch("python");
    let wav = dir.join("hello.wav");
    let output = python_example(
        &bundle(),
        &wav,
        &[
            "--max-new-tokens",
            "4",
            "--min-new-tokens",
            "4",
            "--flow-steps",
            "2",
            "--seed",
            "11",
            "--no-watermark",
            "Hello from Python.",
        ],
    );
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

/// `cbx_synthesize_stream` called from Rust through the exported functions (the C
/// program below covers the same call from C, under valgrind and ASan too).
mod token_streaming {
    use std::ffi::{c_void, CStr, CString};
    use std::mem::size_of;
    use std::ptr::{null, null_mut};

    use chatterbox_ort::ffi::*;

    /// A delivered chunk, owned.
    #[derive(Debug, Clone, PartialEq)]
    struct Got {
        struct_size: u32,
        samples: Vec<f32>,
        offset: u64,
        sample_rate: u32,
        index: u32,
        text_chunk: u32,
        tokens: u32,
        last: i32,
    }

    /// The callback's state: what it got, and the call on which it cancels (1-based).
    #[derive(Default)]
    struct Collector {
        got: Vec<Got>,
        cancel_on: usize,
    }

    unsafe extern "C" fn collect(chunk: *const CbxStreamChunk, user_data: *mut c_void) -> i32 {
        // SAFETY: the library passes a live chunk and our `Collector`.
        let (chunk, collector) = unsafe { (&*chunk, &mut *user_data.cast::<Collector>()) };
        assert!(
            !chunk.samples.is_null(),
            "chunk {} has NULL samples",
            chunk.index
        );
        // SAFETY: `count` samples, valid during the call.
        let samples = unsafe { std::slice::from_raw_parts(chunk.samples, chunk.count) };
        collector.got.push(Got {
            struct_size: chunk.struct_size,
            samples: samples.to_vec(),
            offset: chunk.offset,
            sample_rate: chunk.sample_rate,
            index: chunk.index,
            text_chunk: chunk.text_chunk,
            tokens: chunk.tokens,
            last: chunk.last,
        });
        i32::from(collector.got.len() == collector.cancel_on)
    }

    /// The engine of the tiny bundle, freed on drop.
    struct Engine(*mut CbxEngine);

    impl Drop for Engine {
        fn drop(&mut self) {
            // SAFETY: created by `cbx_engine_create`, freed once.
            unsafe { cbx_engine_free(self.0) };
        }
    }

    fn engine() -> Engine {
        let dir = CString::new(super::bundle().to_str().expect("a UTF-8 path")).unwrap();
        let mut options = CbxEngineOptions::default();
        // SAFETY: live structs; the strings outlive the call.
        unsafe {
            assert_eq!(cbx_engine_options_default(&mut options), CbxStatus::CBX_OK);
            options.bundle_dir = dir.as_ptr();
            options.threads = 1;
            let mut engine = null_mut();
            let status = cbx_engine_create(&options, &mut engine);
            assert_eq!(status, CbxStatus::CBX_OK, "{}", message());
            Engine(engine)
        }
    }

    fn message() -> String {
        // SAFETY: never NULL, NUL-terminated.
        unsafe { CStr::from_ptr(cbx_last_error_message()) }
            .to_string_lossy()
            .into_owned()
    }

    /// 60 speech tokens of one text chunk, two flow steps, no watermark.
    fn request(engine: &Engine, seed: u64) -> CbxRequest {
        // SAFETY: a live engine and struct.
        unsafe {
            let mut request = std::mem::zeroed::<CbxRequest>();
            assert_eq!(
                cbx_request_default(engine.0, &mut request),
                CbxStatus::CBX_OK
            );
            request.seed = seed;
            request.max_new_tokens = 60;
            request.min_new_tokens = 60;
            request.flow_steps = 2;
            request.watermark = 0;
            request
        }
    }

    fn options(first: u32, chunk: u32, overlap: bool) -> CbxStreamOptions {
        let mut options = CbxStreamOptions {
            struct_size: 0,
            first_chunk_tokens: 0,
            chunk_tokens: 0,
            overlap: 0,
        };
        // SAFETY: a live struct.
        assert_eq!(
            unsafe { cbx_stream_options_default(&mut options) },
            CbxStatus::CBX_OK
        );
        options.first_chunk_tokens = first;
        options.chunk_tokens = chunk;
        options.overlap = i32::from(overlap);
        options
    }

    fn new_stats() -> CbxStreamStats {
        CbxStreamStats {
            struct_size: size_of::<CbxStreamStats>() as u32,
            first_audio_s: -1.0,
            chunks: 999,
            max_chunk_latency_s: -1.0,
            mean_chunk_latency_s: -1.0,
            total_s: -1.0,
            audio_s: -1.0,
            rtf: -1.0,
            s3gen_passes: 999,
        }
    }

    const TEXT: &CStr = c"Streaming speech arrives while the model is still talking.";

    /// One call: its status, the chunks the callback got.
    fn stream(
        engine: &Engine,
        request: *const CbxRequest,
        options: *const CbxStreamOptions,
        cancel_on: usize,
        stats: *mut CbxStreamStats,
    ) -> (CbxStatus, Vec<Got>) {
        let mut collector = Collector {
            got: Vec::new(),
            cancel_on,
        };
        // SAFETY: live engine, structs and collector; the callback's contract holds.
        let status = unsafe {
            cbx_synthesize_stream(
                engine.0,
                TEXT.as_ptr(),
                null(),
                request,
                options,
                Some(collect),
                (&mut collector as *mut Collector).cast(),
                stats,
            )
        };
        (status, collector.got)
    }

    #[test]
    fn chunks_are_contiguous_deterministic_and_counted() {
        let engine = engine();
        let request = request(&engine, 5);
        let opts = options(12, 16, false);
        let mut stats = new_stats();
        let (status, got) = stream(&engine, &request, &opts, 0, &mut stats);
        assert_eq!(status, CbxStatus::CBX_OK, "{}", message());

        assert!(got.len() > 1, "{} chunk(s) for one sentence", got.len());
        let mut offset = 0u64;
        for (i, g) in got.iter().enumerate() {
            let last = i + 1 == got.len();
            assert_eq!(g.struct_size as usize, size_of::<CbxStreamChunk>());
            assert_eq!(g.index as usize, i);
            assert_eq!(
                g.offset, offset,
                "chunk {i}: offset is not the sum of the counts"
            );
            assert_eq!(g.last, i32::from(last), "chunk {i}: last");
            assert_eq!((g.sample_rate, g.text_chunk), (24_000, 0), "chunk {i}");
            assert!(last || !g.samples.is_empty(), "chunk {i} is empty");
            assert!(
                g.tokens >= 1 && g.tokens <= 60,
                "chunk {i}: {} tokens",
                g.tokens
            );
            offset += g.samples.len() as u64;
        }
        assert_eq!(got.last().map(|g| g.tokens), Some(60));
        // 960 samples per speech token, finite and in range.
        let all: Vec<f32> = got.iter().flat_map(|g| g.samples.clone()).collect();
        assert_eq!(all.len(), 960 * 60);
        assert!(all.iter().all(|s| s.is_finite() && s.abs() <= 1.0));

        // The stats of this call.
        assert_eq!(stats.struct_size as usize, size_of::<CbxStreamStats>());
        assert_eq!(stats.chunks as usize, got.len());
        assert!(stats.s3gen_passes as usize >= got.len(), "{stats:?}");
        assert!(
            stats.first_audio_s > 0.0 && stats.first_audio_s <= stats.total_s,
            "{stats:?}"
        );
        assert!(
            stats.max_chunk_latency_s > 0.0
                && stats.mean_chunk_latency_s > 0.0
                && stats.mean_chunk_latency_s <= stats.max_chunk_latency_s,
            "{stats:?}"
        );
        assert!((stats.audio_s - 2.4).abs() < 1e-9, "{stats:?}");
        assert!(
            (stats.rtf - stats.total_s / stats.audio_s).abs() < 1e-9,
            "{stats:?}"
        );

        // Same arguments, same chunks; T3 on its own thread gives them too.
        let (status, again) = stream(&engine, &request, &opts, 0, null_mut());
        assert_eq!(status, CbxStatus::CBX_OK, "{}", message());
        assert_eq!(again, got, "the same call gave another stream");
        let (status, overlapped) = stream(&engine, &request, &options(12, 16, true), 0, null_mut());
        assert_eq!(status, CbxStatus::CBX_OK, "{}", message());
        assert_eq!(overlapped, got, "overlap changed the stream");

        // NULL options: the defaults (first audio after 20 tokens, then every 40).
        let (status, defaults) = stream(&engine, &request, null(), 0, null_mut());
        assert_eq!(status, CbxStatus::CBX_OK, "{}", message());
        assert!(
            defaults.len() > 1,
            "{} chunk(s) with the defaults",
            defaults.len()
        );
        assert_eq!(
            defaults.iter().map(|g| g.samples.len()).sum::<usize>(),
            960 * 60
        );
    }

    #[test]
    fn cancelling_stops_at_once_and_leaves_zeroed_stats() {
        let engine = engine();
        let request = request(&engine, 7);
        let mut stats = new_stats();
        let (status, got) = stream(&engine, &request, &options(12, 16, false), 1, &mut stats);
        assert_eq!(status, CbxStatus::CBX_CANCELLED);
        assert!(message().contains("cancel"), "{}", message());
        assert_eq!(got.len(), 1, "callbacks after cancelling on the first");
        assert_eq!(
            (
                stats.chunks,
                stats.first_audio_s,
                stats.total_s,
                stats.s3gen_passes
            ),
            (0, 0.0, 0.0, 0),
            "stats after a failure"
        );
        // With T3 on its own thread, too.
        let (status, got) = stream(&engine, &request, &options(12, 16, true), 2, null_mut());
        assert_eq!(status, CbxStatus::CBX_CANCELLED);
        assert_eq!(got.len(), 2, "callbacks after cancelling on the second");
    }

    #[test]
    fn bad_arguments_are_refused_naming_them() {
        let engine = engine();
        let request = request(&engine, 1);
        let expect = |(status, got): (CbxStatus, Vec<Got>), want: CbxStatus, needle: &str| {
            assert_eq!(status, want, "{}", message());
            assert!(
                message().contains(needle),
                "message {:?} should mention {needle:?}",
                message()
            );
            assert!(got.is_empty(), "the callback ran for a refused call");
        };
        let bad = |first, chunk| options(first, chunk, false);
        expect(
            stream(&engine, &request, &bad(3, 16), 0, null_mut()),
            CbxStatus::CBX_INVALID_ARGUMENT,
            "first_chunk_tokens",
        );
        expect(
            stream(&engine, &request, &bad(5000, 16), 0, null_mut()),
            CbxStatus::CBX_INVALID_ARGUMENT,
            "first_chunk_tokens",
        );
        expect(
            stream(&engine, &request, &bad(12, 0), 0, null_mut()),
            CbxStatus::CBX_INVALID_ARGUMENT,
            "chunk_tokens",
        );
        expect(
            stream(&engine, &request, &bad(12, 4097), 0, null_mut()),
            CbxStatus::CBX_INVALID_ARGUMENT,
            "chunk_tokens",
        );
        // struct_size: 0 (not initialised) and one smaller than any version.
        let mut small = options(12, 16, false);
        small.struct_size = 0;
        expect(
            stream(&engine, &request, &small, 0, null_mut()),
            CbxStatus::CBX_INVALID_ARGUMENT,
            "options->struct_size",
        );
        assert!(message().contains("_default"), "{}", message());
        small.struct_size = 8;
        expect(
            stream(&engine, &request, &small, 0, null_mut()),
            CbxStatus::CBX_INVALID_ARGUMENT,
            "options->struct_size",
        );
        let mut stats = new_stats();
        stats.struct_size = 8;
        expect(
            stream(&engine, &request, null(), 0, &mut stats),
            CbxStatus::CBX_INVALID_ARGUMENT,
            "out_stats->struct_size",
        );
        assert_eq!(stats.chunks, 999, "a refused stats struct was written");
        stats.struct_size = 0;
        expect(
            stream(&engine, &request, null(), 0, &mut stats),
            CbxStatus::CBX_INVALID_ARGUMENT,
            "out_stats->struct_size",
        );
        // A bad request field, invalid text, NULL engine and callback.
        let mut bad_request = request;
        bad_request.flow_steps = 0;
        expect(
            stream(&engine, &bad_request, null(), 0, null_mut()),
            CbxStatus::CBX_INVALID_ARGUMENT,
            "flow_steps",
        );
        let mut collector = Collector::default();
        let user = (&mut collector as *mut Collector).cast::<c_void>();
        // SAFETY: live arguments or NULL; the text is NUL-terminated.
        unsafe {
            let status = cbx_synthesize_stream(
                engine.0,
                c"caf\xc3\x28".as_ptr(),
                null(),
                &request,
                null(),
                Some(collect),
                user,
                null_mut(),
            );
            assert_eq!(status, CbxStatus::CBX_INVALID_TEXT, "{}", message());
            let status = cbx_synthesize_stream(
                null(),
                TEXT.as_ptr(),
                null(),
                &request,
                null(),
                Some(collect),
                user,
                null_mut(),
            );
            assert_eq!(status, CbxStatus::CBX_INVALID_ARGUMENT);
            assert!(message().contains("`engine` is NULL"), "{}", message());
            let status = cbx_synthesize_stream(
                engine.0,
                TEXT.as_ptr(),
                null(),
                &request,
                null(),
                None,
                user,
                null_mut(),
            );
            assert_eq!(status, CbxStatus::CBX_INVALID_ARGUMENT);
            assert!(message().contains("`callback` is NULL"), "{}", message());
        }
        assert!(
            collector.got.is_empty(),
            "the callback ran for a refused call"
        );
    }

    #[test]
    fn versioned_structs_of_other_sizes() {
        let engine = engine();
        let mut request = request(&engine, 3);
        request.max_new_tokens = 24;
        request.min_new_tokens = 24;
        // A caller built against a newer header: larger structs, trailing fields untouched.
        #[repr(C)]
        struct NewerOptions {
            options: CbxStreamOptions,
            extra: u64,
        }
        #[repr(C)]
        struct NewerStats {
            stats: CbxStreamStats,
            extra: u64,
        }
        let mut opts = NewerOptions {
            options: options(10, 8, false),
            extra: 77,
        };
        opts.options.struct_size = size_of::<NewerOptions>() as u32;
        let mut stats = NewerStats {
            stats: new_stats(),
            extra: 0xDEAD_BEEF,
        };
        stats.stats.struct_size = size_of::<NewerStats>() as u32;
        let (status, got) = stream(&engine, &request, &opts.options, 0, &mut stats.stats);
        assert_eq!(status, CbxStatus::CBX_OK, "{}", message());
        assert!(got.len() > 1);
        assert_eq!(
            stats.extra, 0xDEAD_BEEF,
            "a field past the library's struct was written"
        );
        assert_eq!(
            stats.stats.struct_size as usize,
            size_of::<NewerStats>(),
            "struct_size changed"
        );
        assert_eq!(stats.stats.chunks as usize, got.len());
        assert!(stats.stats.first_audio_s > 0.0);
    }

    #[test]
    fn options_default_to_the_library_defaults() {
        let mut options = CbxStreamOptions {
            struct_size: 0,
            first_chunk_tokens: 0,
            chunk_tokens: 0,
            overlap: 5,
        };
        // SAFETY: a live struct; NULL is checked.
        unsafe {
            assert_eq!(cbx_stream_options_default(&mut options), CbxStatus::CBX_OK);
            assert_eq!(
                cbx_stream_options_default(null_mut()),
                CbxStatus::CBX_INVALID_ARGUMENT
            );
        }
        assert!(message().contains("`options` is NULL"), "{}", message());
        assert_eq!(options.struct_size as usize, size_of::<CbxStreamOptions>());
        assert_eq!(
            (
                options.first_chunk_tokens,
                options.chunk_tokens,
                options.overlap
            ),
            (20, 40, 0)
        );
    }
}

/// The multilingual bundle through the C ABI: its language list, and a request's
/// `language` field reaching the engine (synthesis in a language and the error without).
mod multilingual {
    use std::ffi::{CStr, CString};
    use std::ptr::{null, null_mut};

    use chatterbox_ort::ffi::*;

    #[test]
    fn languages_and_the_request_field() {
        let dir = super::root().join("onnx/tiny-multilingual");
        let dir = CString::new(dir.to_str().expect("a UTF-8 path")).unwrap();
        let text = CString::new("Bonjour.").unwrap();
        // SAFETY: live structs and strings for every call; every object freed once.
        unsafe {
            let mut options = CbxEngineOptions::default();
            assert_eq!(cbx_engine_options_default(&mut options), CbxStatus::CBX_OK);
            options.bundle_dir = dir.as_ptr();
            options.threads = 1;
            let mut engine = null_mut();
            assert_eq!(cbx_engine_create(&options, &mut engine), CbxStatus::CBX_OK);

            let mut list = null_mut();
            assert_eq!(cbx_engine_languages(engine, &mut list), CbxStatus::CBX_OK);
            let ids = CStr::from_ptr(list).to_str().unwrap().to_string();
            cbx_string_free(list);
            assert_eq!(ids.split(',').count(), 23, "{ids}");
            assert!(
                ids.starts_with("ar,da,de,") && ids.ends_with(",zh"),
                "{ids}"
            );

            let mut request = std::mem::zeroed::<CbxRequest>();
            assert_eq!(cbx_request_default(engine, &mut request), CbxStatus::CBX_OK);
            assert!(
                request.language.iter().all(|&c| c == 0),
                "a default language"
            );
            request.max_new_tokens = 4;
            request.min_new_tokens = 4;
            request.flow_steps = 1;
            let mut audio = null_mut();
            let status = cbx_synthesize(engine, text.as_ptr(), null(), &request, &mut audio);
            assert_eq!(status, CbxStatus::CBX_INVALID_ARGUMENT);
            let msg = CStr::from_ptr(cbx_last_error_message()).to_string_lossy();
            assert!(msg.contains("language") && msg.contains("fr"), "{msg}");

            for (n, b) in b"FR\0".iter().enumerate() {
                request.language[n] = *b as std::ffi::c_char;
            }
            let status = cbx_synthesize(engine, text.as_ptr(), null(), &request, &mut audio);
            assert_eq!(status, CbxStatus::CBX_OK);
            let (mut data, mut count, mut rate) = (null(), 0usize, 0u32);
            assert_eq!(
                cbx_audio_samples(audio, &mut data, &mut count, &mut rate),
                CbxStatus::CBX_OK
            );
            assert_eq!(count, 4 * 960);
            cbx_audio_free(audio);
            cbx_engine_free(engine);
        }
    }
}
