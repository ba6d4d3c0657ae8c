//! The library's errors as Python exceptions.
//!
//! The classes live in `chatterbox_ort/_errors.py` (Python defines the hierarchy: an
//! `InvalidArgumentError` is both a `ChatterboxError` and a `ValueError`); this module builds
//! an instance through `_errors._from_native(kind, code, message, parameter, errno, filename)`.

use pyo3::prelude::*;

use chatterbox_ort::Error;

/// The exception for `e`. If the exception classes cannot be reached (a broken install),
/// the error saying so is returned instead.
pub(crate) fn to_py(py: Python<'_>, e: &Error) -> PyErr {
    let kind = e.kind();
    let (parameter, errno, filename) = match e {
        Error::InvalidArgument { name, .. } => (Some(name.clone()), None, None),
        Error::Io { path, cause } => (None, cause.raw_os_error(), Some(path.clone())),
        Error::Bundle { path, .. } | Error::VoiceFile { path, .. } => {
            (None, None, Some(path.clone()))
        }
        _ => (None, None, None),
    };
    let build = || -> PyResult<PyErr> {
        let exc = py
            .import("chatterbox_ort._errors")?
            .getattr("_from_native")?
            .call1((
                kind.name(),
                kind.code(),
                e.to_string(),
                parameter,
                errno,
                filename,
            ))?;
        Ok(PyErr::from_value(exc))
    };
    build().unwrap_or_else(|err| err)
}

/// `InvalidArgumentError` for parameter `name` (the library's message format).
pub(crate) fn invalid_argument(py: Python<'_>, name: &str, reason: impl Into<String>) -> PyErr {
    to_py(py, &Error::invalid_argument(name, reason))
}

/// `.to_py(py)`: a library result as a Python one.
pub(crate) trait ResultExt<T> {
    fn to_py(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> ResultExt<T> for chatterbox_ort::Result<T> {
    fn to_py(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py(py, &e))
    }
}
