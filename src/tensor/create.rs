//! Building tensors from flat host data, the way `torch.tensor` infers dtypes: integers give
//! int64, any float gives float32, booleans give bool.

use anyhow::{bail, Result};
use tch::Tensor;

/// Host values gathered from a nested literal, all of one scalar class.
pub enum FlatData {
    Int(Vec<i64>),
    Float(Vec<f32>),
    Bool(Vec<bool>),
}

/// A tensor of the given shape holding `data` in row-major order.
pub fn from_flat(data: FlatData, shape: &[i64]) -> Result<Tensor> {
    let numel: i64 = shape.iter().product();
    let (t, len) = match &data {
        FlatData::Int(v) => (Tensor::f_from_slice(v)?, v.len()),
        FlatData::Float(v) => (Tensor::f_from_slice(v)?, v.len()),
        FlatData::Bool(v) => (Tensor::f_from_slice(v)?, v.len()),
    };
    if len as i64 != numel {
        bail!("{len} values do not fill a tensor of shape {shape:?}");
    }
    Ok(t.f_reshape(shape)?)
}

/// A copy of `t` with its own storage (PyTorch's `clone`: differentiable, same dtype and device).
pub fn copy_of(t: &Tensor) -> Result<Tensor> {
    Ok(t.f_to_dtype(t.f_kind()?, false, true)?)
}
