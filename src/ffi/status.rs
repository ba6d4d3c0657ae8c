//! Status codes, the per-thread last-error message and the guard every
//! exported function runs its body in.

use std::any::Any;
use std::cell::RefCell;
use std::ffi::{c_char, c_int, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{Error, ErrorKind};

/// The result of every fallible call. `CBX_OK` is 0; every other value is
/// one kind of library error, and `cbx_last_error_message()` says what
/// went wrong, naming the file, tensor or parameter.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CbxStatus {
    /// Success.
    CBX_OK = 0,
    /// A bad argument: a NULL pointer, an option out of range, an unknown
    /// residency preset, a `struct_size` this library does not know.
    CBX_INVALID_ARGUMENT = 1,
    /// The text is not UTF-8, is empty, or cannot be tokenised.
    CBX_INVALID_TEXT = 2,
    /// Audio that cannot be used: an unreadable or corrupt WAV, no samples,
    /// a zero sample rate, non-finite samples.
    CBX_INVALID_AUDIO = 3,
    /// A file could not be read or written.
    CBX_IO = 4,
    /// The bundle is missing, incomplete or fails its checksums.
    CBX_BUNDLE = 5,
    /// A graph's inputs or outputs do not match the bundle manifest.
    CBX_MODEL_MISMATCH = 6,
    /// ONNX Runtime failed (loading the runtime, a session, a run).
    CBX_RUNTIME = 7,
    /// The requested execution provider is not available.
    CBX_PROVIDER_UNAVAILABLE = 8,
    /// The residency memory budget cannot hold what a stage needs.
    CBX_BUDGET = 9,
    /// The streaming callback asked to stop.
    CBX_CANCELLED = 10,
    /// A bug in chatterbox-ort (an internal invariant, or a caught panic).
    CBX_INTERNAL = 11,
}

impl From<ErrorKind> for CbxStatus {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::InvalidArgument => CbxStatus::CBX_INVALID_ARGUMENT,
            ErrorKind::InvalidText => CbxStatus::CBX_INVALID_TEXT,
            ErrorKind::InvalidAudio => CbxStatus::CBX_INVALID_AUDIO,
            ErrorKind::Io => CbxStatus::CBX_IO,
            ErrorKind::Bundle => CbxStatus::CBX_BUNDLE,
            ErrorKind::ModelMismatch => CbxStatus::CBX_MODEL_MISMATCH,
            ErrorKind::Runtime => CbxStatus::CBX_RUNTIME,
            ErrorKind::ProviderUnavailable => CbxStatus::CBX_PROVIDER_UNAVAILABLE,
            ErrorKind::Budget => CbxStatus::CBX_BUDGET,
            ErrorKind::Cancelled => CbxStatus::CBX_CANCELLED,
            ErrorKind::Internal => CbxStatus::CBX_INTERNAL,
        }
    }
}

impl CbxStatus {
    fn name(self) -> &'static str {
        match self {
            CbxStatus::CBX_OK => "CBX_OK\0",
            CbxStatus::CBX_INVALID_ARGUMENT => "CBX_INVALID_ARGUMENT\0",
            CbxStatus::CBX_INVALID_TEXT => "CBX_INVALID_TEXT\0",
            CbxStatus::CBX_INVALID_AUDIO => "CBX_INVALID_AUDIO\0",
            CbxStatus::CBX_IO => "CBX_IO\0",
            CbxStatus::CBX_BUNDLE => "CBX_BUNDLE\0",
            CbxStatus::CBX_MODEL_MISMATCH => "CBX_MODEL_MISMATCH\0",
            CbxStatus::CBX_RUNTIME => "CBX_RUNTIME\0",
            CbxStatus::CBX_PROVIDER_UNAVAILABLE => "CBX_PROVIDER_UNAVAILABLE\0",
            CbxStatus::CBX_BUDGET => "CBX_BUDGET\0",
            CbxStatus::CBX_CANCELLED => "CBX_CANCELLED\0",
            CbxStatus::CBX_INTERNAL => "CBX_INTERNAL\0",
        }
    }

    const ALL: [CbxStatus; 12] = [
        CbxStatus::CBX_OK,
        CbxStatus::CBX_INVALID_ARGUMENT,
        CbxStatus::CBX_INVALID_TEXT,
        CbxStatus::CBX_INVALID_AUDIO,
        CbxStatus::CBX_IO,
        CbxStatus::CBX_BUNDLE,
        CbxStatus::CBX_MODEL_MISMATCH,
        CbxStatus::CBX_RUNTIME,
        CbxStatus::CBX_PROVIDER_UNAVAILABLE,
        CbxStatus::CBX_BUDGET,
        CbxStatus::CBX_CANCELLED,
        CbxStatus::CBX_INTERNAL,
    ];
}

/// A failure on its way out through the C ABI: a status and its message.
#[derive(Debug)]
pub(crate) struct FfiError {
    pub(crate) status: CbxStatus,
    pub(crate) message: String,
}

impl FfiError {
    pub(crate) fn new(status: CbxStatus, message: impl Into<String>) -> Self {
        FfiError {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn invalid_argument(message: impl Into<String>) -> Self {
        FfiError::new(CbxStatus::CBX_INVALID_ARGUMENT, message)
    }
}

impl From<Error> for FfiError {
    fn from(err: Error) -> Self {
        let mut message = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            let text = cause.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = cause.source();
        }
        FfiError {
            status: err.kind().into(),
            message,
        }
    }
}

pub(crate) type FfiResult<T> = Result<T, FfiError>;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(status: CbxStatus, message: &str) {
    let text = if message.is_empty() {
        status.name().trim_end_matches('\0')
    } else {
        message
    };
    let bytes: Vec<u8> = text
        .bytes()
        .map(|b| if b == 0 { b'?' } else { b })
        .collect();
    let cstring = CString::new(bytes).unwrap_or_default();
    // `try_with` fails only while the thread is being torn down, when no
    // caller could read the message anyway.
    let _ = LAST_ERROR.try_with(|slot| *slot.borrow_mut() = cstring);
}

fn panic_text(payload: &(dyn Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "a panic without a message"
    }
}

/// Runs the body of an exported function: catches panics, records the
/// message of a failure for `cbx_last_error_message` and returns the status.
pub(crate) fn guard(body: impl FnOnce() -> FfiResult<()>) -> CbxStatus {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => CbxStatus::CBX_OK,
        Ok(Err(err)) => {
            set_last_error(err.status, &err.message);
            err.status
        }
        Err(payload) => {
            let message = format!(
                "internal error (panic in chatterbox-ort): {}",
                panic_text(payload.as_ref())
            );
            set_last_error(CbxStatus::CBX_INTERNAL, &message);
            CbxStatus::CBX_INTERNAL
        }
    }
}

/// Runs a body that cannot fail except by panicking, returning `fallback`
/// (and recording the panic as the last error) when it does.
pub(crate) fn guard_value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(payload) => {
            let message = format!(
                "internal error (panic in chatterbox-ort): {}",
                panic_text(payload.as_ref())
            );
            set_last_error(CbxStatus::CBX_INTERNAL, &message);
            fallback
        }
    }
}

/// The message of the last failing call on the calling thread, as UTF-8;
/// an empty string when no call on this thread has failed yet.
///
/// Ownership: the string belongs to the library. It stays valid until the
/// next failing `cbx_` call on the same thread (successful calls leave it
/// alone) or until the thread exits; copy it to keep it longer. Never NULL.
///
/// Thread-safety: each thread has its own message; callable from any thread.
#[no_mangle]
pub extern "C" fn cbx_last_error_message() -> *const c_char {
    static EMPTY: &[u8] = b"\0";
    guard_value(EMPTY.as_ptr().cast(), || {
        LAST_ERROR
            .try_with(|slot| slot.borrow().as_ptr())
            .unwrap_or(EMPTY.as_ptr().cast())
    })
}

/// The name of a status code as a static string, e.g. `"CBX_CANCELLED"`;
/// `"CBX_UNKNOWN"` for a value that is not a `CbxStatus`.
///
/// Ownership: static; never free it. Never NULL.
///
/// Thread-safety: callable from any thread.
#[no_mangle]
pub extern "C" fn cbx_status_name(status: c_int) -> *const c_char {
    let name = CbxStatus::ALL
        .iter()
        .find(|known| **known as c_int == status)
        .map_or("CBX_UNKNOWN\0", |known| known.name());
    name.as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use super::*;

    fn last_message() -> String {
        // SAFETY: never NULL, NUL-terminated, valid until the next failure.
        unsafe { CStr::from_ptr(cbx_last_error_message()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn every_error_kind_has_the_status_of_its_code() {
        for kind in ErrorKind::ALL {
            assert_eq!(CbxStatus::from(kind) as i32, kind.code(), "{kind}");
        }
        for status in CbxStatus::ALL {
            // SAFETY: a static NUL-terminated string.
            let name = unsafe { CStr::from_ptr(cbx_status_name(status as c_int)) };
            assert_eq!(
                name.to_str().ok(),
                Some(status.name().trim_end_matches('\0'))
            );
        }
    }

    #[test]
    fn a_panic_becomes_internal_with_its_message() {
        let status = guard(|| panic!("boom at the boundary"));
        assert_eq!(status, CbxStatus::CBX_INTERNAL);
        let message = last_message();
        assert!(message.contains("boom at the boundary"), "{message}");
        assert_eq!(guard_value(7, || panic!("again")), 7);
        assert!(last_message().contains("again"));
    }

    #[test]
    fn failures_set_the_message_and_successes_keep_it() {
        let status =
            guard(|| Err(Error::invalid_argument("temperature", "must be > 0, got -1").into()));
        assert_eq!(status, CbxStatus::CBX_INVALID_ARGUMENT);
        assert_eq!(
            last_message(),
            "invalid argument `temperature`: must be > 0, got -1"
        );
        assert_eq!(guard(|| Ok(())), CbxStatus::CBX_OK);
        assert_eq!(
            last_message(),
            "invalid argument `temperature`: must be > 0, got -1"
        );
        // Interior NUL bytes cannot end the C string early.
        guard(|| Err(FfiError::new(CbxStatus::CBX_IO, "a\0b")));
        assert_eq!(last_message(), "a?b");
    }

    #[test]
    fn io_errors_keep_their_cause() {
        let err = Error::io(
            "/x/voice.wav",
            std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        );
        let ffi = FfiError::from(err);
        assert_eq!(ffi.status, CbxStatus::CBX_IO);
        assert!(
            ffi.message.contains("/x/voice.wav") && ffi.message.contains("gone"),
            "{}",
            ffi.message
        );
    }
}
