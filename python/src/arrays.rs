//! Samples to and from NumPy arrays, through NumPy's Python API.
//!
//! Audio leaves as `numpy.frombuffer(bytearray, float32)`: a writable float32 array that owns
//! its one copy of the samples. Audio comes in through `numpy.ascontiguousarray(x, float32)`
//! and is copied out (another thread may change the caller's array once the GIL is
//! released). Nothing here needs NumPy's C API, so the extension links no NumPy code.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes};

use crate::errors::invalid_argument;

static NUMPY: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// The `numpy` module (imported once, when the extension is).
pub(crate) fn numpy(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    NUMPY
        .get_or_try_init(py, || py.import("numpy").map(Bound::unbind))
        .map(|m| m.bind(py))
}

/// `samples` as a 1-D float32 array.
pub(crate) fn to_array<'py>(py: Python<'py>, samples: &[f32]) -> PyResult<Bound<'py, PyAny>> {
    let bytes = PyByteArray::new_with(py, std::mem::size_of_val(samples), |buf| {
        for (dst, x) in buf.chunks_exact_mut(4).zip(samples) {
            dst.copy_from_slice(&x.to_ne_bytes());
        }
        Ok(())
    })?;
    numpy(py)?.call_method1("frombuffer", (bytes, "float32"))
}

/// A 1-D array-like (`name`, for the error) as float32 samples.
pub(crate) fn from_array(
    py: Python<'_>,
    name: &str,
    samples: &Bound<'_, PyAny>,
) -> PyResult<Vec<f32>> {
    let array = numpy(py)?.call_method1("ascontiguousarray", (samples, "float32"))?;
    let ndim: usize = array.getattr("ndim")?.extract()?;
    if ndim != 1 {
        return Err(invalid_argument(
            py,
            name,
            format!("must be one-dimensional (mono), got {ndim} dimensions"),
        ));
    }
    let bytes = array.call_method0("tobytes")?.cast_into::<PyBytes>()?;
    Ok(bytes
        .as_bytes()
        .chunks_exact(4)
        .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}
