//! Numbers beside tensors, promoted the way PyTorch promotes Python scalars: an integer keeps an
//! integer tensor's dtype (a bool tensor becomes int64), a float beside an integer tensor gives
//! float32, and either beside a float tensor keeps its dtype. The numbers become 0-dim tensors
//! before the op, so that every op here is a tensor-tensor op. Arithmetic, comparison, clamping
//! and filling take operands this way.

use anyhow::Result;
use tch::{Kind, Tensor};

use super::dtype::is_floating;

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

    /// The operand as a tensor beside `like`: a number becomes a 0-dim tensor on `like`'s
    /// device, of the dtype PyTorch would promote it to.
    pub fn to_tensor(&self, like: &Tensor) -> Result<Tensor> {
        let kind = like.f_kind()?;
        Ok(match self {
            Operand::Tensor(t) => t.shallow_clone(),
            Operand::Int(i) => Tensor::f_scalar_tensor(*i, (if kind == Kind::Bool { Kind::Int64 } else { kind }, like.device()))?,
            Operand::Float(f) => Tensor::f_scalar_tensor(*f, (if is_floating(kind) { kind } else { Kind::Float }, like.device()))?,
        })
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
        let (ta, tb) = match (a, b) {
            (Operand::Tensor(x), other) => (x.shallow_clone(), other.to_tensor(x)?),
            (other, Operand::Tensor(y)) => (other.to_tensor(y)?, y.shallow_clone()),
            (other, _) => {
                let reference = Tensor::f_zeros([0], (Kind::Float, tch::Device::Cpu))?;
                (other.to_tensor(&reference)?, b.to_tensor(&reference)?)
            }
        };
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
        let o = other.to_tensor(t)?;
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
    let min = min.map(|m| m.to_tensor(t)).transpose()?;
    let max = max.map(|m| m.to_tensor(t)).transpose()?;
    Ok(t.f_clamp_tensor(min.as_ref(), max.as_ref())?)
}

/// `t.masked_fill(mask, value)`.
pub fn masked_fill(t: &Tensor, mask: &Tensor, value: &Operand) -> Result<Tensor> {
    Ok(t.f_masked_fill_tensor(mask, &value.to_tensor(t)?)?)
}

/// Fills `t` in place with a number.
pub fn fill_(t: &mut Tensor, value: &Operand) -> Result<()> {
    let v = value.to_tensor(t)?;
    let _ = t.f_fill_tensor_(&v)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

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
}
