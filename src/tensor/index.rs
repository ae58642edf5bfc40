//! Indexing as PyTorch's `x[...]`: basic slicing by dim (`x[0, 1:3, ::2]`, as a list of
//! `Index`), and advanced indexing by a tensor (`x[mask]` with a bool mask, `x[ids]` with int64
//! ids), reading and writing.

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

use super::scalar::Operand;

/// What one dim of a basic index takes.
#[derive(Clone, Debug, PartialEq)]
pub enum Index {
    /// One position; the dim is dropped (`x[2]`, negative from the end).
    At(i64),
    /// `start:stop:step`; None is the start or end of the dim (`x[1:]`, `x[:, ::2]`).
    Range { start: Option<i64>, stop: Option<i64>, step: i64 },
}

/// `x[i0, i1, …]`: each index applies to the next dim; dims beyond the list are kept whole.
pub fn slice(t: &Tensor, indices: &[Index]) -> Result<Tensor> {
    if indices.len() > t.dim() {
        bail!("{} indices for a tensor with {} dims", indices.len(), t.dim());
    }
    let mut out = t.shallow_clone();
    let mut dim = 0i64;
    for (i, index) in indices.iter().enumerate() {
        let size = out.size()[dim as usize];
        match *index {
            Index::At(at) => {
                if at < -size || at >= size {
                    bail!("index {at} is out of range for dim {i} of size {size}");
                }
                out = out.f_select(dim, at)?;
            }
            Index::Range { start, stop, step } => {
                if step <= 0 {
                    bail!("slice step must be positive, got {step} (dim {i})");
                }
                out = out.f_slice(dim, start, stop, step)?;
                dim += 1;
            }
        }
    }
    Ok(out)
}

fn check_index_tensor(index: &Tensor) -> Result<()> {
    match index.kind() {
        Kind::Bool | Kind::Uint8 | Kind::Int64 | Kind::Int => Ok(()),
        other => bail!("a tensor index must be bool (a mask) or integer (positions), got {}", super::dtype_name(other)),
    }
}

/// `x[index]`: a bool mask picks the elements (or leading-dim rows) where it is true, as a
/// 1-D (or row) tensor; integer ids pick rows of dim 0.
pub fn take(t: &Tensor, index: &Tensor) -> Result<Tensor> {
    check_index_tensor(index)?;
    Ok(t.f_index(&[Some(index)])?)
}

/// `x[index] = value`, in place: a tensor (broadcast to the picked elements) or a number.
pub fn put_(t: &Tensor, index: &Tensor, value: &Operand) -> Result<()> {
    check_index_tensor(index)?;
    let values = value.to_tensor_like(t)?;
    let mut target = t.shallow_clone();
    let _ = target.f_index_put_(&[Some(index)], &values, false)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn slices_and_masks_like_pytorch() {
        let x = Tensor::arange(24, (Kind::Int64, Device::Cpu)).view([2, 3, 4]);
        let s = slice(&x, &[Index::At(1), Index::Range { start: Some(0), stop: Some(2), step: 1 }, Index::Range { start: None, stop: None, step: 2 }]).unwrap();
        assert_eq!(Vec::<i64>::try_from(&s.reshape([-1])).unwrap(), vec![12, 14, 16, 18]);
        assert!(slice(&x, &[Index::At(2)]).is_err());
        let mask = x.gt(20);
        assert_eq!(Vec::<i64>::try_from(&take(&x, &mask).unwrap()).unwrap(), vec![21, 22, 23]);
        put_(&x, &mask, &Operand::Int(0)).unwrap();
        assert_eq!(x.sum(Kind::Int64).int64_value(&[]), (0..21).sum::<i64>());
        assert!(take(&x, &Tensor::from_slice(&[0.5f32])).is_err());
    }
}
