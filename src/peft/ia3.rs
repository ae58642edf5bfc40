//! IA3 (Liu et al. 2022, as PEFT 0.21's `ia3.Linear`): a learned vector that scales a layer's
//! output (keys, values: `y = base(x) ⊙ l`, l of shape (out, 1)) or, on a feed-forward layer,
//! its input (`y = base(x ⊙ l)`, l of shape (1, in)). Starts at ones, the identity.

use anyhow::Result;
use tch::{Kind, Tensor};

use crate::module_children;
use crate::nn::attach::LinearAdapter;
use crate::nn::hooks::Ctx;
use crate::nn::linear::Linear;
use crate::nn::module::{Module, Owner};

pub struct Ia3Layer {
    pub owner: String,
    /// (out, 1), or (1, in) on a feed-forward layer.
    pub scale: Tensor,
    pub feedforward: bool,
}

impl Ia3Layer {
    pub fn new(owner: &str, base: &Linear, feedforward: bool, ones: bool, kind: Kind) -> Result<Ia3Layer> {
        let shape = if feedforward { [1, base.in_features] } else { [base.out_features, 1] };
        let opts = (kind, base.weight.device());
        let scale = if ones { Tensor::f_ones(shape, opts)? } else { Tensor::f_randn(shape, opts)? };
        Ok(Ia3Layer { owner: owner.to_string(), scale: scale.f_set_requires_grad(true)?, feedforward })
    }

    fn flat(&self, kind: Kind) -> Result<Tensor> {
        Ok(self.scale.f_flatten(0, -1)?.f_to_kind(kind)?)
    }
}

impl Module for Ia3Layer {
    fn class_name(&self) -> &'static str {
        "Ia3Linear"
    }

    fn own_parameters(&self) -> Vec<(&str, &Tensor)> {
        vec![("ia3_l", &self.scale)]
    }

    fn owner(&self) -> Owner {
        Owner::Adapter(self.owner.clone())
    }

    fn extra_repr(&self) -> String {
        format!("feedforward={}", self.feedforward)
    }

    module_children!();
}

impl LinearAdapter for Ia3Layer {
    fn input(&self, x: &Tensor) -> Result<Option<Tensor>> {
        if !self.feedforward {
            return Ok(None);
        }
        Ok(Some(x.f_mul(&self.flat(x.kind())?)?))
    }

    fn forward(&self, _ctx: &Ctx, _base: &Linear, _x: &Tensor, base_out: Tensor) -> Result<Tensor> {
        if self.feedforward {
            return Ok(base_out);
        }
        let kind = base_out.kind();
        Ok(base_out.f_mul(&self.flat(kind)?)?)
    }

    fn merge(&mut self, weight: &Tensor, bias: Option<&Tensor>) -> Result<(Tensor, Option<Tensor>)> {
        let l = self.flat(weight.kind())?;
        if self.feedforward {
            return Ok((weight.f_mul(&l.f_unsqueeze(0)?)?, bias.map(|b| b.shallow_clone())));
        }
        Ok((weight.f_mul(&l.f_unsqueeze(1)?)?, bias.map(|b| b.f_mul(&l)).transpose()?))
    }

    fn unmerge(&mut self, weight: &Tensor, bias: Option<&Tensor>) -> Result<(Tensor, Option<Tensor>)> {
        // As PEFT: divide by the scale, nudged away from zero.
        let l = self.flat(weight.kind())?.f_add_scalar(1e-8)?;
        if self.feedforward {
            return Ok((weight.f_div(&l.f_unsqueeze(0)?)?, bias.map(|b| b.shallow_clone())));
        }
        Ok((weight.f_div(&l.f_unsqueeze(1)?)?, bias.map(|b| b.f_div(&l)).transpose()?))
    }
}
