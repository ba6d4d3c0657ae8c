//! [`Value`]: an owned ONNX Runtime tensor.

use std::fmt;
use std::ptr::NonNull;

use ndarray::{ArrayD, ArrayViewD};
use ort::memory::{AllocationDevice, Allocator};
use ort::value::{DynTensorValueType, DynValue, Tensor, TensorElementType, ValueType};
use ort::AsPointer;

use crate::bundle::DType;
use crate::error::{Error, Result};

/// An owned tensor, as given to and returned by [`Session::run`](super::Session::run): in CPU
/// memory, except state that [`Session::alloc_f32`](super::Session::alloc_f32) placed on a
/// device.
///
/// Moving a `Value` moves a handle, not the data, so an output can be fed back as the next
/// call's input without a copy. Values do not borrow the session that produced them.
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

    /// An f32 tensor of `shape` in CPU memory from ONNX Runtime's default allocator, its
    /// contents unspecified (not zeroed: the pages of a large allocation stay uncommitted until
    /// written). Such a tensor can be bound as an output of
    /// [`Session::run_in_place`](super::Session::run_in_place); write it (with
    /// [`Value::f32_slice_mut`]) before reading it.
    pub fn alloc_f32(shape: &[usize]) -> Result<Value> {
        Value::alloc(DType::Float32, shape)
    }

    /// A tensor of element type `dtype` and `shape` in CPU memory, as [`Value::alloc_f32`]
    /// (e.g. an fp16 graph's KV cache); write it (with [`Value::bytes_mut`]) before reading it.
    pub fn alloc(dtype: DType, shape: &[usize]) -> Result<Value> {
        super::environment()?;
        alloc_uninit(&Allocator::default(), ort_type(dtype), shape)
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

    /// The data of an f32 tensor in CPU memory, row-major.
    pub fn f32_slice(&self) -> Result<&[f32]> {
        match self.inner.try_extract_tensor::<f32>() {
            Ok((_, data)) => Ok(data),
            Err(e) => Err(self.access_error("reading", e)),
        }
    }

    /// The data of an f32 tensor in CPU memory, row-major, for writing.
    pub fn f32_slice_mut(&mut self) -> Result<&mut [f32]> {
        let (ty, shape) = (self.dtype_name(), self.shape());
        match self.inner.try_extract_tensor_mut::<f32>() {
            Ok((_, data)) => Ok(data),
            Err(e) => Err(Error::runtime(format!(
                "writing a {ty} tensor {shape:?} as f32: {e}"
            ))),
        }
    }

    /// The raw data of a tensor in CPU memory, row-major, native byte order, whatever its
    /// element type (element count x element size bytes).
    pub fn bytes(&self) -> Result<&[u8]> {
        let len = self.checked_byte_len()?;
        let t = self
            .inner
            .view()
            .downcast::<DynTensorValueType>()
            .map_err(|e| self.access_error("reading", e))?;
        if !t.memory_info().is_cpu_accessible() {
            return Err(self.access_error("reading", "the data is not in CPU memory"));
        }
        let ptr = t.data_ptr().cast::<u8>();
        if len == 0 {
            return Ok(&[]);
        }
        // SAFETY: a CPU tensor of `len` data bytes (element size x element count), alive and
        // not written while `self` is borrowed.
        Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
    }

    /// The raw data of a tensor in CPU memory, for writing (see [`Value::bytes`]).
    pub fn bytes_mut(&mut self) -> Result<&mut [u8]> {
        let len = self.checked_byte_len()?;
        let (ty, shape) = (self.dtype_name(), self.shape());
        let on_cpu = self.is_on_host();
        if !on_cpu {
            return Err(Error::runtime(format!(
                "writing a {ty} tensor {shape:?}: the data is not in CPU memory"
            )));
        }
        let t = self
            .inner
            .view()
            .downcast::<DynTensorValueType>()
            .map_err(|e| Error::runtime(format!("writing a {ty} tensor {shape:?}: {e}")))?;
        // ONNX Runtime's GetTensorMutableData: writable, and `self` is borrowed mutably.
        let ptr = t.data_ptr().cast::<u8>().cast_mut();
        if len == 0 {
            return Ok(&mut []);
        }
        // SAFETY: as `bytes`, borrowed mutably through `self`.
        Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
    }

    fn checked_byte_len(&self) -> Result<usize> {
        match self.dtype() {
            Some(d) => Ok(self.len() * d.size()),
            None => Err(self.access_error("reading the bytes of", "unsupported element type")),
        }
    }

    /// Whether the data is in CPU memory (readable with [`Value::f32_slice`]).
    pub fn is_on_host(&self) -> bool {
        match self.inner.view().downcast::<DynTensorValueType>() {
            Ok(t) => t.memory_info().is_cpu_accessible(),
            Err(_) => false,
        }
    }

    /// A copy in CPU memory of a tensor on a device (or in CPU memory).
    pub fn to_host(&self) -> Result<Value> {
        let t = self
            .inner
            .view()
            .downcast::<DynTensorValueType>()
            .map_err(|e| self.access_error("copying to the host", e))?;
        let host = t
            .to(AllocationDevice::CPU, 0)
            .map_err(|e| self.access_error("copying to the host", e))?;
        Ok(Value {
            inner: host.into_dyn(),
        })
    }

    /// Overwrites this tensor's data with `src`'s (same dtype and shape; either may be on a
    /// device).
    pub fn copy_from(&mut self, src: &Value) -> Result<()> {
        if src.shape() != self.shape() || src.dtype() != self.dtype() {
            return Err(Error::internal(format!(
                "copying a {} tensor {:?} into a {} tensor {:?}",
                src.dtype_name(),
                src.shape(),
                self.dtype_name(),
                self.shape()
            )));
        }
        let from = src
            .inner
            .view()
            .downcast::<DynTensorValueType>()
            .map_err(|e| src.access_error("copying", e))?;
        let (ty, shape) = (self.dtype_name(), self.shape());
        let into = self
            .inner
            .view_mut()
            .downcast::<DynTensorValueType>()
            .map_err(|e| Error::runtime(format!("copying into a {ty} tensor {shape:?}: {e}")))?;
        from.copy_into(into)
            .map_err(|e| Error::runtime(format!("copying into a {ty} tensor {shape:?}: {e}")))
    }

    fn access_error(&self, what: &str, e: impl fmt::Display) -> Error {
        Error::runtime(format!(
            "{what} a {} tensor {:?}: {e}",
            self.dtype_name(),
            self.shape()
        ))
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

    pub(crate) fn ort(&self) -> &DynValue {
        &self.inner
    }

    pub(crate) fn ort_mut(&mut self) -> &mut DynValue {
        &mut self.inner
    }
}

/// A tensor of `shape` from `allocator`, its contents unspecified. Unlike
/// `ort::value::Tensor::new` it does not zero the data (which would commit every page).
pub(crate) fn alloc_uninit(
    allocator: &Allocator,
    ty: TensorElementType,
    shape: &[usize],
) -> Result<Value> {
    let bytes = shape
        .iter()
        .try_fold(ty.byte_size(1).unwrap_or(1), |acc, &d| acc.checked_mul(d))
        .filter(|&b| b <= isize::MAX as usize)
        .ok_or_else(|| Error::invalid_argument("shape", format!("{shape:?} overflows")))?;
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    let api = ort::api();
    let mut ptr: *mut ort::sys::OrtValue = std::ptr::null_mut();
    // SAFETY: the library is loaded (callers checked `environment()`); the allocator, the
    // shape buffer and the out-pointer are valid for the call.
    let status = unsafe {
        (api.CreateTensorAsOrtValue)(
            allocator.ptr().cast_mut(),
            dims.as_ptr(),
            dims.len(),
            ty.into(),
            &mut ptr,
        )
    };
    super::status_to_result(
        status,
        &format!("allocating a {ty} tensor {shape:?} ({bytes} bytes)"),
    )?;
    let ptr = NonNull::new(ptr).ok_or_else(|| {
        Error::runtime(format!(
            "allocating a {ty} tensor {shape:?}: ONNX Runtime returned no value"
        ))
    })?;
    // SAFETY: `ptr` is a tensor ONNX Runtime just created with `allocator`, owned from here on.
    let inner = unsafe { DynValue::from_ptr(ptr, Some(allocator)) };
    Ok(Value { inner })
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

/// The ONNX Runtime element type of a bundle dtype.
pub(crate) fn ort_type(dtype: DType) -> TensorElementType {
    match dtype {
        DType::Float32 => TensorElementType::Float32,
        DType::Float16 => TensorElementType::Float16,
        DType::Int64 => TensorElementType::Int64,
        DType::Int32 => TensorElementType::Int32,
        DType::Bool => TensorElementType::Bool,
    }
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
