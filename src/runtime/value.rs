//! [`Value`]: an owned ONNX Runtime tensor.

use std::fmt;

use ndarray::{ArrayD, ArrayViewD};
use ort::value::{DynValue, Tensor, TensorElementType, ValueType};

use crate::bundle::DType;
use crate::error::{Error, Result};

/// An owned tensor in CPU memory, as given to and returned by [`Session::run`](super::Session::run).
///
/// Moving a `Value` moves a handle, not the data, so an output (e.g. a KV-cache
/// `present_key_i`) can be fed back as the next call's input without a copy.
/// Values do not borrow the session that produced them.
pub struct Value {
    inner: DynValue,
}

impl Value {
    /// An f32 tensor of `shape` from row-major `data` (`data.len()` must equal the product of
    /// `shape`; zero-sized dims are allowed, e.g. an empty KV cache `[B, H, 0, hd]`).
    ///
    /// Like every constructor, fails with a `Runtime` error before [`init`](super::init)
    /// succeeded (creating a tensor needs the library).
    pub fn from_f32(shape: &[usize], data: Vec<f32>) -> Result<Value> {
        check_len(shape, data.len())?;
        super::environment()?;
        let t = Tensor::from_array((shape.to_vec(), data))
            .map_err(|e| Error::runtime(format!("creating f32 tensor {shape:?}: {e}")))?;
        Ok(Value {
            inner: t.into_dyn(),
        })
    }

    /// An i64 tensor of `shape` from row-major `data`.
    pub fn from_i64(shape: &[usize], data: Vec<i64>) -> Result<Value> {
        check_len(shape, data.len())?;
        super::environment()?;
        let t = Tensor::from_array((shape.to_vec(), data))
            .map_err(|e| Error::runtime(format!("creating i64 tensor {shape:?}: {e}")))?;
        Ok(Value {
            inner: t.into_dyn(),
        })
    }

    /// An f32 tensor from an ndarray (copied only if not in standard layout).
    pub fn from_array_f32<D: ndarray::Dimension + 'static>(
        array: ndarray::Array<f32, D>,
    ) -> Result<Value> {
        super::environment()?;
        let t = Tensor::from_array(array)
            .map_err(|e| Error::runtime(format!("creating f32 tensor: {e}")))?;
        Ok(Value {
            inner: t.into_dyn(),
        })
    }

    /// An i64 tensor from an ndarray (copied only if not in standard layout).
    pub fn from_array_i64<D: ndarray::Dimension + 'static>(
        array: ndarray::Array<i64, D>,
    ) -> Result<Value> {
        super::environment()?;
        let t = Tensor::from_array(array)
            .map_err(|e| Error::runtime(format!("creating i64 tensor: {e}")))?;
        Ok(Value {
            inner: t.into_dyn(),
        })
    }

    /// The tensor's shape.
    pub fn shape(&self) -> Vec<usize> {
        match self.inner.dtype() {
            ValueType::Tensor { shape, .. } => shape.iter().map(|&d| d.max(0) as usize).collect(),
            _ => Vec::new(),
        }
    }

    /// The element type, if it is one the bundles use.
    pub fn dtype(&self) -> Option<DType> {
        match self.inner.dtype() {
            ValueType::Tensor { ty, .. } => dtype_from_ort(*ty),
            _ => None,
        }
    }

    /// Human-readable element type (also for types bundles do not use).
    pub fn dtype_name(&self) -> String {
        match self.inner.dtype() {
            ValueType::Tensor { ty, .. } => match dtype_from_ort(*ty) {
                Some(d) => d.name().to_string(),
                None => format!("{ty}"),
            },
            other => format!("{other:?}"),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape().iter().product()
    }

    /// Size of the data in bytes (0 for element types bundles do not use).
    pub fn byte_len(&self) -> usize {
        self.len() * self.dtype().map_or(0, DType::size)
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Borrows the data of an f32 tensor.
    pub fn view_f32(&self) -> Result<ArrayViewD<'_, f32>> {
        self.inner.try_extract_array::<f32>().map_err(|e| {
            Error::runtime(format!(
                "reading a {} tensor {:?} as f32: {e}",
                self.dtype_name(),
                self.shape()
            ))
        })
    }

    /// Borrows the data of an i64 tensor.
    pub fn view_i64(&self) -> Result<ArrayViewD<'_, i64>> {
        self.inner.try_extract_array::<i64>().map_err(|e| {
            Error::runtime(format!(
                "reading a {} tensor {:?} as i64: {e}",
                self.dtype_name(),
                self.shape()
            ))
        })
    }

    /// Copies an f32 tensor into an owned array.
    pub fn to_array_f32(&self) -> Result<ArrayD<f32>> {
        Ok(self.view_f32()?.to_owned())
    }

    /// Copies an i64 tensor into an owned array.
    pub fn to_array_i64(&self) -> Result<ArrayD<i64>> {
        Ok(self.view_i64()?.to_owned())
    }

    pub(crate) fn from_ort(inner: DynValue) -> Value {
        Value { inner }
    }

    pub(crate) fn into_ort(self) -> DynValue {
        self.inner
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Value({} {:?})", self.dtype_name(), self.shape())
    }
}

fn check_len(shape: &[usize], len: usize) -> Result<()> {
    let expected = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::invalid_argument("shape", format!("{shape:?} overflows")))?;
    if expected != len {
        return Err(Error::invalid_argument(
            "data",
            format!("shape {shape:?} needs {expected} elements, got {len}"),
        ));
    }
    Ok(())
}

pub(crate) fn dtype_from_ort(ty: TensorElementType) -> Option<DType> {
    match ty {
        TensorElementType::Float32 => Some(DType::Float32),
        TensorElementType::Float16 => Some(DType::Float16),
        TensorElementType::Int64 => Some(DType::Int64),
        TensorElementType::Int32 => Some(DType::Int32),
        TensorElementType::Bool => Some(DType::Bool),
        _ => None,
    }
}
