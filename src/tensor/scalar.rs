//! Numbers beside tensors, promoted the way PyTorch promotes Python scalars: a number becomes
//! one of libtorch's wrapped numbers (a 0-dim tensor that type promotion ranks as a scalar), so
//! that an integer keeps an integer tensor's dtype (`uint8 + 300` is uint8, as in PyTorch), a
//! float beside an integer tensor gives float32, and either beside a float tensor keeps its
//! dtype. Every op here is then a tensor-tensor op: no tch `Scalar` (whose destructor panics
//! when the op it was passed to failed) is ever made. Arithmetic, comparison, clamping and
//! filling take operands this way.

use anyhow::Result;
use tch::Tensor;

use super::shim;

/// One side of an operation: a tensor or a number.
pub enum Operand {
    Tensor(Tensor),
    Int(i64),
    Float(f64),
}

impl Operand {
    /// A bound or fill value given as a float that holds an integer (`2.0`) acts as an integer,
    /// as a Python int would, so that it keeps an integer tensor's dtype.
    pub fn number(v: f64) -> Operand {
        if v.fract() == 0.0 && v.abs() < 9.0e15 {
            Operand::Int(v as i64)
        } else {
            Operand::Float(v)
        }
    }

    /// The operand as a tensor: a number becomes a wrapped number (CPU, promoted as a scalar).
    pub fn to_tensor(&self) -> Result<Tensor> {
        match self {
            Operand::Tensor(t) => Ok(t.shallow_clone()),
            Operand::Int(i) => shim::wrapped_int(*i),
            Operand::Float(f) => shim::wrapped_float(*f),
        }
    }

    /// The operand with `like`'s dtype and device, for ops that need them equal (scatter's
    /// source, index assignment): a number is converted as a cast would (300 → uint8 wraps).
    pub fn to_tensor_like(&self, like: &Tensor) -> Result<Tensor> {
        match self {
            Operand::Tensor(t) => Ok(t.shallow_clone()),
            number => Ok(number.to_tensor()?.f_to_dtype_layout((like.f_kind()?, like.device()), false, false)?),
        }
    }
}

/// The arithmetic operators.
#[derive(Clone, Copy, Debug)]
pub enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
}

impl Arith {
    pub fn name(self) -> &'static str {
        match self {
            Arith::Add => "add",
            Arith::Sub => "sub",
            Arith::Mul => "mul",
            Arith::Div => "div",
            Arith::Pow => "pow",
        }
    }

    /// `a op b` with broadcasting and type promotion; either side may be a number.
    pub fn apply(self, a: &Operand, b: &Operand) -> Result<Tensor> {
        let (ta, tb) = (a.to_tensor()?, b.to_tensor()?);
        Ok(match self {
            Arith::Add => ta.f_add(&tb)?,
            Arith::Sub => ta.f_sub(&tb)?,
            Arith::Mul => ta.f_mul(&tb)?,
            Arith::Div => ta.f_div(&tb)?,
            Arith::Pow => ta.f_pow(&tb)?,
        })
    }
}

/// The comparisons.
#[derive(Clone, Copy, Debug)]
pub enum Compare {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Compare {
    /// `t cmp other`, elementwise, as a bool tensor.
    pub fn apply(self, t: &Tensor, other: &Operand) -> Result<Tensor> {
        let o = other.to_tensor()?;
        Ok(match self {
            Compare::Eq => t.f_eq_tensor(&o)?,
            Compare::Ne => t.f_ne_tensor(&o)?,
            Compare::Lt => t.f_lt_tensor(&o)?,
            Compare::Le => t.f_le_tensor(&o)?,
            Compare::Gt => t.f_gt_tensor(&o)?,
            Compare::Ge => t.f_ge_tensor(&o)?,
        })
    }
}

/// `t.clamp(min, max)` with either bound optional.
pub fn clamp(t: &Tensor, min: Option<&Operand>, max: Option<&Operand>) -> Result<Tensor> {
    let min = min.map(Operand::to_tensor).transpose()?;
    let max = max.map(Operand::to_tensor).transpose()?;
    Ok(t.f_clamp_tensor(min.as_ref(), max.as_ref())?)
}

/// `t.masked_fill(mask, value)`.
pub fn masked_fill(t: &Tensor, mask: &Tensor, value: &Operand) -> Result<Tensor> {
    Ok(t.f_masked_fill_tensor(mask, &value.to_tensor()?)?)
}

/// Fills `t` in place with a number.
pub fn fill_(t: &mut Tensor, value: &Operand) -> Result<()> {
    let v = value.to_tensor()?;
    let _ = t.f_fill_tensor_(&v)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn numbers_promote_like_python_scalars() {
        let ints = Tensor::from_slice(&[1i32, 2]);
        assert_eq!(Arith::Add.apply(&Operand::Tensor(ints.shallow_clone()), &Operand::Int(3)).unwrap().kind(), Kind::Int);
        assert_eq!(Arith::Add.apply(&Operand::Tensor(ints.shallow_clone()), &Operand::Float(0.5)).unwrap().kind(), Kind::Float);
        let bools = Tensor::from_slice(&[true, false]);
        assert_eq!(Arith::Add.apply(&Operand::Tensor(bools), &Operand::Int(1)).unwrap().kind(), Kind::Int64);
        let halves = Tensor::ones([2], (Kind::Half, Device::Cpu));
        assert_eq!(Arith::Mul.apply(&Operand::Float(2.0), &Operand::Tensor(halves)).unwrap().kind(), Kind::Half);
    }

    #[test]
    fn numbers_libtorch_cannot_convert_are_errors_or_wrap_as_in_pytorch() {
        let bytes = Tensor::ones([2], (Kind::Uint8, Device::Cpu));
        // uint8 + 300 wraps, as in PyTorch; a float overflowing float32 gives inf.
        let sum = Arith::Add.apply(&Operand::Tensor(bytes.shallow_clone()), &Operand::Int(300)).unwrap();
        assert_eq!((sum.kind(), sum.int64_value(&[0])), (Kind::Uint8, 45));
        let big = Arith::Mul.apply(&Operand::Tensor(Tensor::ones([2], (Kind::Float, Device::Cpu))), &Operand::Float(1e300)).unwrap();
        assert!(big.double_value(&[0]).is_infinite());
        assert!(!bool::try_from(Compare::Eq.apply(&bytes, &Operand::Int(256)).unwrap().any()).unwrap());
        // masked_fill of float32 with -1e300 is libtorch's error, as in PyTorch, returned rather
        // than the panic a tch Scalar made of it; fill_ gives -inf.
        let mask = Tensor::from_slice(&[true, false]);
        let err = masked_fill(&Tensor::ones([2], (Kind::Float, Device::Cpu)), &mask, &Operand::Float(-1e300)).unwrap_err();
        assert!(err.to_string().contains("cannot be converted to type float"), "{err}");
        let mut floats = Tensor::ones([2], (Kind::Float, Device::Cpu));
        fill_(&mut floats, &Operand::Float(-1e300)).unwrap();
        assert_eq!(floats.double_value(&[0]), f64::NEG_INFINITY);
    }
}
