//! The small blocks transformer checkpoints are made of, each loaded by checkpoint path and
//! applied with `forward`: Linear (and GPT-2's transposed Conv1D), Embedding, RMSNorm and
//! LayerNorm, with transformers' numerics.

use anyhow::Result;
use tch::{Kind, Tensor};

use super::weights::{Init, Weights};

/// `y = x Wᵀ + b`, W (out, in), as `nn.Linear`.
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    pub fn load(w: &mut Weights, prefix: &str, in_dim: i64, out_dim: i64, bias: bool) -> Result<Linear> {
        let weight = w.param(&format!("{prefix}.weight"), &[out_dim, in_dim], Init::Normal)?;
        let bias = if bias { Some(w.param(&format!("{prefix}.bias"), &[out_dim], Init::Zeros)?) } else { None };
        Ok(Linear { weight, bias })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_linear(&self.weight, self.bias.as_ref())?)
    }
}

/// GPT-2's `Conv1D`: `y = x W + b` with W stored (in, out).
pub struct Conv1D {
    pub weight: Tensor,
    pub bias: Tensor,
}

impl Conv1D {
    pub fn load(w: &mut Weights, prefix: &str, in_dim: i64, out_dim: i64) -> Result<Conv1D> {
        Ok(Conv1D {
            weight: w.param(&format!("{prefix}.weight"), &[in_dim, out_dim], Init::Normal)?,
            bias: w.param(&format!("{prefix}.bias"), &[out_dim], Init::Zeros)?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_matmul(&self.weight)?.f_add(&self.bias)?)
    }
}

pub struct Embedding {
    pub weight: Tensor,
}

impl Embedding {
    pub fn load(w: &mut Weights, prefix: &str, num: i64, dim: i64) -> Result<Embedding> {
        Ok(Embedding { weight: w.param(&format!("{prefix}.weight"), &[num, dim], Init::Normal)? })
    }

    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(Tensor::f_embedding(&self.weight, ids, -1, false, false)?)
    }
}

/// RMSNorm as Llama's: normalise in float32, cast back, then scale.
pub struct RmsNorm {
    pub weight: Tensor,
    pub eps: f64,
}

impl RmsNorm {
    pub fn load(w: &mut Weights, prefix: &str, dim: i64, eps: f64) -> Result<RmsNorm> {
        Ok(RmsNorm { weight: w.param(&format!("{prefix}.weight"), &[dim], Init::Ones)?, eps })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let kind = x.kind();
        let h = x.f_to_kind(Kind::Float)?;
        let variance = h.f_pow_tensor_scalar(2)?.f_mean_dim(-1, true, None::<Kind>)?;
        let h = h.f_mul(&variance.f_add_scalar(self.eps)?.f_rsqrt()?)?;
        Ok(self.weight.f_mul(&h.f_to_kind(kind)?)?)
    }
}

pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
}

impl LayerNorm {
    pub fn load(w: &mut Weights, prefix: &str, dim: i64, eps: f64) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: w.param(&format!("{prefix}.weight"), &[dim], Init::Ones)?,
            bias: w.param(&format!("{prefix}.bias"), &[dim], Init::Zeros)?,
            eps,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dim = self.weight.size();
        Ok(x.f_layer_norm(dim.as_slice(), Some(&self.weight), Some(&self.bias), self.eps, true)?)
    }
}
