//! `Embedding`: rows of a (num_embeddings, dim) table looked up by id, as `torch.nn.Embedding`.

use anyhow::Result;
use tch::Tensor;

use super::hooks::Ctx;
use super::module::Module;
use super::weights::{Init, Weights};

pub struct Embedding {
    /// The module's dotted name in its model.
    pub name: String,
    pub weight: Tensor,
}

impl Embedding {
    pub fn load(w: &mut Weights, name: &str, num: i64, dim: i64) -> Result<Embedding> {
        Ok(Embedding { name: name.to_string(), weight: w.param(&format!("{name}.weight"), &[num, dim], Init::Normal)? })
    }

    /// ids (…) int64 → (…, dim).
    pub fn forward(&self, ctx: &Ctx, ids: &Tensor) -> Result<Tensor> {
        let out = Tensor::f_embedding(&self.weight, ids, -1, false, false)?;
        ctx.output(&self.name, ids, out)
    }
}

impl Module for Embedding {
    fn class_name(&self) -> &'static str {
        "Embedding"
    }

    fn own_parameters(&self) -> Vec<(&str, &Tensor)> {
        vec![("weight", &self.weight)]
    }

    fn extra_repr(&self) -> String {
        let size = self.weight.size();
        format!("{}, {}", size[0], size[1])
    }

    fn forward_tensor(&self, ctx: &Ctx, x: &Tensor) -> Option<Result<Tensor>> {
        Some(self.forward(ctx, x))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}
