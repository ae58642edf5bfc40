//! `Embedding`: rows of a (num_embeddings, dim) table looked up by id, as `torch.nn.Embedding`,
//! whose `padding_idx` row gets no gradient.

use anyhow::{bail, Result};
use tch::Tensor;

use super::hooks::Ctx;
use super::module::Module;
use super::weights::{Init, Weights};
use crate::module_children;

pub struct Embedding {
    /// The module's dotted name in its model.
    pub name: String,
    pub weight: Tensor,
    /// The row that gets no gradient (the pad token's), as an index into the table.
    pub padding_idx: Option<i64>,
}

impl Embedding {
    /// Loads `name.weight` (num, dim); `padding_idx` may count from the end, as in PyTorch.
    pub fn load(w: &mut Weights, name: &str, num: i64, dim: i64, padding_idx: Option<i64>) -> Result<Embedding> {
        let padding_idx = match padding_idx {
            Some(p) if p >= num || p < -num => bail!("{name}: padding index {p} is outside the {num} embeddings"),
            Some(p) => Some(if p < 0 { num + p } else { p }),
            None => None,
        };
        Ok(Embedding { name: name.to_string(), weight: w.param(&format!("{name}.weight"), &[num, dim], Init::Normal)?, padding_idx })
    }

    /// ids (…) int64 → (…, dim). An id outside the table is an error naming it and where it is.
    pub fn forward(&self, ctx: &Ctx, ids: &Tensor) -> Result<Tensor> {
        let out = match Tensor::f_embedding(&self.weight, ids, self.padding_idx.unwrap_or(-1), false, false) {
            Ok(out) => out,
            Err(e) => return Err(self.outside(ids)?.unwrap_or_else(|| e.into())),
        };
        ctx.output(&self.name, ids, out)
    }

    /// The error for the first id outside the table, if there is one (checked only after a
    /// lookup failed, so a good batch pays nothing).
    fn outside(&self, ids: &Tensor) -> Result<Option<anyhow::Error>> {
        let n = self.weight.size()[0];
        let flat = ids.f_reshape([-1])?.f_to_kind(tch::Kind::Int64)?;
        let bad = flat.f_lt(0)?.f_logical_or(&flat.f_ge(n)?)?;
        if !bool::try_from(&bad.f_any()?)? {
            return Ok(None);
        }
        let at = i64::try_from(&bad.f_to_kind(tch::Kind::Int64)?.f_argmax(0, false)?)?;
        let id = i64::try_from(&flat.f_select(0, at)?)?;
        let size = ids.size();
        let place = match size.as_slice() {
            [_, width] if *width > 0 => format!("at row {}, position {}", at / width, at % width),
            _ => format!("at index {at}"),
        };
        Ok(Some(anyhow::anyhow!("token id {id} {place} is outside the vocabulary of {n} ids ({}: ids run from 0 to {})", self.name, n - 1)))
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

    module_children!();
}
