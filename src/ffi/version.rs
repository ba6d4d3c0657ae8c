//! Versions of the library, its C ABI and ONNX Runtime.

use std::ffi::{c_char, CString};
use std::sync::OnceLock;

use super::status::{guard, guard_value, CbxStatus, FfiError};

/// The version of the C ABI this header describes. It changes only when a
/// change breaks callers built against an older header (appending fields
/// to a `struct_size` struct does not). Compare with `cbx_abi_version()`.
pub const CBX_ABI_VERSION: u32 = 1;

/// The library's version, e.g. `"0.1.0"`.
///
/// Ownership: static; never free it. Never NULL.
///
/// Thread-safety: callable from any thread.
#[no_mangle]
pub extern "C" fn cbx_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The C ABI version of the loaded library (`CBX_ABI_VERSION` of the header
/// it was built with). A program should check it equals the
/// `CBX_ABI_VERSION` it was compiled against.
///
/// Thread-safety: callable from any thread.
#[no_mangle]
pub extern "C" fn cbx_abi_version() -> u32 {
    CBX_ABI_VERSION
}

/// The version of the ONNX Runtime library this process loaded, e.g.
/// `"1.32.0"`. ONNX Runtime is loaded by the first successful
/// `cbx_engine_create`; before that this returns NULL (and
/// `cbx_last_error_message()` says so).
///
/// Ownership: static once known; never free it.
///
/// Thread-safety: callable from any thread.
#[no_mangle]
pub extern "C" fn cbx_onnxruntime_version() -> *const c_char {
    static VERSION: OnceLock<CString> = OnceLock::new();
    guard_value(std::ptr::null(), || {
        if let Some(version) = VERSION.get() {
            return version.as_ptr();
        }
        let mut found = None;
        let status = guard(|| {
            if !crate::runtime::is_initialized() {
                return Err(FfiError::new(
                    CbxStatus::CBX_RUNTIME,
                    "ONNX Runtime is not loaded yet: the first cbx_engine_create loads it",
                ));
            }
            let version = crate::runtime::onnxruntime_version()?;
            let cstring = CString::new(version).map_err(|_| {
                FfiError::new(
                    CbxStatus::CBX_INTERNAL,
                    "the ONNX Runtime version contains a NUL byte",
                )
            })?;
            found = Some(cstring);
            Ok(())
        });
        match found {
            Some(cstring) if status == CbxStatus::CBX_OK => {
                VERSION.get_or_init(|| cstring).as_ptr()
            }
            _ => std::ptr::null(),
        }
    })
}
