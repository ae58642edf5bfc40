//! Numbers beside tensors, promoted the way PyTorch promotes Python scalars: a number becomes
//! one of libtorch's wrapped numbers (a 0-dim tensor that type promotion ranks as a scalar), so
//! that an integer keeps an integer tensor's dtype (`uint8 + 300` is uint8, as in PyTorch), a
//! float beside an integer tensor gives float32, and either beside a float tensor keeps its
//! dtype. Every op here is then a tensor-tensor op: no tch `Scalar` (whose destructor panics
//! when the op it was passed to failed) is ever made. Arithmetic, comparison, clamping and
//! filling take operands this way.

use anyhow::Result;
use tch::{Kind, Tensor};

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

/// Fills `t` in place with a number; one `t`'s dtype cannot hold is an error, as PyTorch's
/// `fill_`, `full` and index assignment check it (c10's checked_convert).
pub fn fill_(t: &mut Tensor, value: &Operand) -> Result<()> {
    let kind = t.f_kind()?;
    if overflows(kind, value) {
        let shown = match value {
            Operand::Int(i) => i.to_string(),
            Operand::Float(f) => format!("{f:e}"),
            Operand::Tensor(_) => "the tensor".into(),
        };
        anyhow::bail!("value {shown} cannot be converted to {} without overflow", super::dtype_name(kind));
    }
    let v = value.to_tensor()?;
    let _ = t.f_fill_tensor_(&v)?;
    Ok(())
}

/// Whether a number is out of `kind`'s range as c10's checked_convert sees it: integers must
/// lie in the dtype's range (uint8 also takes -255..-1, which wrap, as PyTorch allows); NaN
/// and infinities never fit an integer dtype; a finite float must not pass a float dtype's
/// largest value (infinities and NaN are values of a float dtype).
fn overflows(kind: Kind, value: &Operand) -> bool {
    let integer_range = match kind {
        Kind::Uint8 => Some((-255.0, 255.0)),
        Kind::Int8 => Some((i8::MIN as f64, i8::MAX as f64)),
        Kind::Int16 => Some((i16::MIN as f64, i16::MAX as f64)),
        Kind::Int => Some((i32::MIN as f64, i32::MAX as f64)),
        Kind::Int64 => Some((i64::MIN as f64, i64::MAX as f64)),
        _ => None,
    };
    let float_max = match kind {
        Kind::Half => Some(65504.0),
        Kind::BFloat16 => Some(3.389_531_389_251_535_5e38),
        Kind::Float => Some(f32::MAX as f64),
        _ => None,
    };
    let v = match value {
        Operand::Int(i) => *i as f64,
        Operand::Float(f) => *f,
        Operand::Tensor(_) => return false,
    };
    if let Some((low, high)) = integer_range {
        return !(low..=high).contains(&v);
    }
    matches!(float_max, Some(max) if v.is_finite() && v.abs() > max)
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
        // than the panic a tch Scalar made of it; fill_ checks as PyTorch's does.
        let mask = Tensor::from_slice(&[true, false]);
        let err = masked_fill(&Tensor::ones([2], (Kind::Float, Device::Cpu)), &mask, &Operand::Float(-1e300)).unwrap_err();
        assert!(err.to_string().contains("cannot be converted to type float"), "{err}");
    }

    #[test]
    fn fill_refuses_what_pytorch_refuses() {
        // (dtype, value, fits), each checked against torch.zeros(2, dtype=...).fill_(value).
        let cases = [
            (Kind::Float, Operand::Float(1e300), false),
            (Kind::Float, Operand::Float(f64::INFINITY), true),
            (Kind::Uint8, Operand::Int(300), false),
            (Kind::Uint8, Operand::Int(-1), true),
            (Kind::Uint8, Operand::Int(-255), true),
            (Kind::Uint8, Operand::Int(-256), false),
            (Kind::Int8, Operand::Int(128), false),
            (Kind::Int, Operand::Int(1 << 40), false),
            (Kind::Int, Operand::Float(f64::INFINITY), false),
            (Kind::Int, Operand::Float(f64::NAN), false),
            (Kind::Half, Operand::Int(100000), false),
            (Kind::BFloat16, Operand::Float(1e39), false),
            (Kind::Int64, Operand::Float(1e300), false),
            (Kind::Int64, Operand::Float(9.223_372_036_854_775_807e18), true),
            (Kind::Bool, Operand::Int(300), true),
            (Kind::Double, Operand::Float(1e300), true),
        ];
        for (kind, value, fits) in cases {
            let mut t = Tensor::zeros([2], (kind, Device::Cpu));
            let result = fill_(&mut t, &value);
            assert_eq!(result.is_ok(), fits, "{kind:?}: {result:?}");
        }
        let mut bytes = Tensor::zeros([2], (Kind::Uint8, Device::Cpu));
        let err = fill_(&mut bytes, &Operand::Int(300)).unwrap_err();
        assert_eq!(err.to_string(), "value 300 cannot be converted to uint8 without overflow");
        fill_(&mut bytes, &Operand::Int(-1)).unwrap();
        assert_eq!(bytes.int64_value(&[0]), 255);
    }
}
