//! ONNX Runtime loading errors, in their own test binary (one process-wide runtime: the
//! steps must run in this order in one process, so they are one test).

mod runtime_common;

use std::path::PathBuf;

use chatterbox_ort::error::ErrorKind;
use chatterbox_ort::runtime::{self, RuntimeOptions, Value};

fn opts(path: impl Into<PathBuf>) -> RuntimeOptions {
    RuntimeOptions {
        library_path: Some(path.into()),
        ..RuntimeOptions::default()
    }
}

#[test]
fn bad_paths_are_errors_then_a_good_one_loads_once() {
    let dir = runtime_common::Scratch::new("init");

    // Nothing loaded yet: every entry point errors instead of panicking.
    assert!(!runtime::is_initialized());
    for err in [
        runtime::onnxruntime_version().unwrap_err(),
        runtime::available_providers().unwrap_err(),
        Value::from_f32(&[1], vec![0.0]).unwrap_err(),
        Value::from_i64(&[1], vec![0]).unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::Runtime, "{err}");
        assert!(err.to_string().contains("not initialised"), "{err}");
    }

    // A missing file.
    let missing = dir.path().join("libonnxruntime.so.9.9.9");
    let err = runtime::init(&opts(&missing)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Runtime);
    let msg = err.to_string();
    assert!(
        msg.contains("libonnxruntime.so.9.9.9") && !msg.contains('\n'),
        "{msg}"
    );

    // A file that is not a shared library.
    let junk = dir.path().join("libonnxruntime.so");
    std::fs::write(&junk, b"not an ELF file").unwrap();
    let err = runtime::init(&opts(&junk)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Runtime);
    assert!(err.to_string().contains("cannot load"), "{err}");

    // A shared library that is not ONNX Runtime.
    let libc_path = [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
        "/lib64/libm.so.6",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file());
    if let Some(libm) = libc_path {
        let err = runtime::init(&opts(&libm)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Runtime);
        assert!(
            err.to_string().contains("not an ONNX Runtime library"),
            "{err}"
        );
    }

    // ORT_DYLIB_PATH naming a missing file is an error, not a fall-through.
    std::env::set_var("ORT_DYLIB_PATH", &missing);
    let err = runtime::init(&RuntimeOptions::default()).unwrap_err();
    assert!(err.to_string().contains("ORT_DYLIB_PATH"), "{err}");
    std::env::remove_var("ORT_DYLIB_PATH");
    assert!(!runtime::is_initialized());

    // The default search finds the library build.rs provisioned; telemetry is disabled.
    std::env::remove_var("ORT_DISABLE_TELEMETRY");
    runtime::init(&RuntimeOptions::default()).unwrap();
    assert!(runtime::is_initialized());
    assert_eq!(std::env::var("ORT_DISABLE_TELEMETRY").as_deref(), Ok("1"));
    let info = runtime::info().unwrap();
    assert!(info.library_path.is_file());
    assert!(runtime::onnxruntime_version().unwrap().starts_with("1."));

    // Same library again: fine. Another path: refused.
    runtime::init(&opts(&info.library_path)).unwrap();
    let copy = dir.path().join("copy-libonnxruntime.so");
    std::fs::copy(&info.library_path, &copy).unwrap();
    let err = runtime::init(&opts(&copy)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Runtime);
    assert!(err.to_string().contains("already initialised"), "{err}");

    // Now tensors can be made.
    assert_eq!(
        Value::from_f32(&[2], vec![1.0, 2.0]).unwrap().shape(),
        vec![2]
    );
}
