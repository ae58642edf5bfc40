//! The norms of the loaded models, with transformers' numerics: `RmsNorm` as Llama's
//! (normalise in float32, cast back, then scale) and `LayerNorm` as `torch.nn.LayerNorm`.

use anyhow::Result;
use tch::Tensor;

use super::attach::Norm;
use super::hooks::Ctx;
use super::module::Module;
use super::weights::{Init, Weights};
use crate::module_children;
use crate::tensor::shim;

pub struct RmsNorm {
    /// The module's dotted name in its model.
    pub name: String,
    pub weight: Tensor,
    pub eps: f64,
}

impl RmsNorm {
    pub fn load(w: &mut Weights, name: &str, dim: i64, eps: f64) -> Result<RmsNorm> {
        Ok(RmsNorm { name: name.to_string(), weight: w.param(&format!("{name}.weight"), &[dim], Init::Ones)?, eps })
    }

    /// x (…, dim) → (…, dim).
    pub fn forward(&self, ctx: &Ctx, x: &Tensor) -> Result<Tensor> {
        let out = shim::rms_norm(x, &self.weight, self.eps)?;
        ctx.output(&self.name, x, out)
    }
}

impl Norm for RmsNorm {
    fn forward(&self, ctx: &Ctx, x: &Tensor) -> Result<Tensor> {
        RmsNorm::forward(self, ctx, x)
    }
}

impl Module for RmsNorm {
    fn class_name(&self) -> &'static str {
        "RMSNorm"
    }

    fn own_parameters(&self) -> Vec<(&str, &Tensor)> {
        vec![("weight", &self.weight)]
    }

    fn extra_repr(&self) -> String {
        format!("{:?}, eps={}", self.weight.size(), self.eps)
    }

    fn forward_tensor(&self, ctx: &Ctx, x: &Tensor) -> Option<Result<Tensor>> {
        Some(self.forward(ctx, x))
    }

    module_children!();
}

pub struct LayerNorm {
    /// The module's dotted name in its model.
    pub name: String,
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
}

impl LayerNorm {
    pub fn load(w: &mut Weights, name: &str, dim: i64, eps: f64) -> Result<LayerNorm> {
        Ok(LayerNorm {
            name: name.to_string(),
            weight: w.param(&format!("{name}.weight"), &[dim], Init::Ones)?,
            bias: w.param(&format!("{name}.bias"), &[dim], Init::Zeros)?,
            eps,
        })
    }

    /// x (…, dim) → (…, dim).
    pub fn forward(&self, ctx: &Ctx, x: &Tensor) -> Result<Tensor> {
        let dim = self.weight.size();
        let out = x.f_layer_norm(dim.as_slice(), Some(&self.weight), Some(&self.bias), self.eps, true)?;
        ctx.output(&self.name, x, out)
    }
}

impl Norm for LayerNorm {
    fn forward(&self, ctx: &Ctx, x: &Tensor) -> Result<Tensor> {
        LayerNorm::forward(self, ctx, x)
    }
}

impl Module for LayerNorm {
    fn class_name(&self) -> &'static str {
        "LayerNorm"
    }

    fn own_parameters(&self) -> Vec<(&str, &Tensor)> {
        vec![("weight", &self.weight), ("bias", &self.bias)]
    }

    fn extra_repr(&self) -> String {
        format!("{:?}, eps={}", self.weight.size(), self.eps)
    }

    fn forward_tensor(&self, ctx: &Ctx, x: &Tensor) -> Option<Result<Tensor>> {
        Some(self.forward(ctx, x))
    }

    module_children!();
}
