//! `modules_to_save`: a trainable copy of a whole linear layer (an output head, a classifier)
//! that replaces the layer's output while its adapter is active, as PEFT's
//! `ModulesToSaveWrapper`; the original stays frozen and comes back when the adapter is off.

use anyhow::Result;
use tch::Tensor;

use crate::module_children;
use crate::nn::attach::{LinearAdapter, LinearPoint};
use crate::nn::hooks::Ctx;
use crate::nn::linear::{Layout, Linear};
use crate::nn::module::{Module, Owner};

pub struct SavedModule {
    pub owner: String,
    /// The copy, in the original's layout, untied.
    pub copy: Linear,
    /// The base weights replaced by a merge, to unmerge.
    original: Option<(Tensor, Option<Tensor>)>,
}

impl SavedModule {
    pub fn new(owner: &str, base: &Linear) -> Result<SavedModule> {
        if matches!(base.layout, Layout::Quantized { .. } | Layout::FourBit) {
            anyhow::bail!("'{}' keeps its weight quantised; modules_to_save needs a floating-point layer", base.name);
        }
        let _guard = tch::no_grad_guard();
        let copy = Linear {
            name: base.name.clone(),
            in_features: base.in_features,
            out_features: base.out_features,
            weight: base.weight.f_detach_copy()?.f_set_requires_grad(true)?,
            layout: base.layout,
            bias: base.bias.as_ref().map(|b| b.f_detach_copy()?.f_set_requires_grad(true)).transpose()?,
            tied: false,
            adapters: LinearPoint::default(),
            fourbit: None,
        };
        Ok(SavedModule { owner: owner.to_string(), copy, original: None })
    }
}

impl Module for SavedModule {
    fn class_name(&self) -> &'static str {
        "ModulesToSave"
    }

    fn own_parameters(&self) -> Vec<(&str, &Tensor)> {
        self.copy.own_parameters()
    }

    fn owner(&self) -> Owner {
        Owner::Adapter(self.owner.clone())
    }

    fn extra_repr(&self) -> String {
        self.copy.extra_repr()
    }

    module_children!();
}

impl LinearAdapter for SavedModule {
    fn forward(&self, _ctx: &Ctx, _base: &Linear, x: &Tensor, _base_out: Tensor) -> Result<Tensor> {
        self.copy.base_forward(x)
    }

    fn merge(&mut self, weight: &Tensor, bias: Option<&Tensor>) -> Result<(Tensor, Option<Tensor>)> {
        self.original = Some((weight.f_detach_copy()?, bias.map(|b| b.f_detach_copy()).transpose()?));
        Ok((self.copy.weight_out_in()?.f_detach()?, self.copy.bias.as_ref().map(|b| b.f_detach()).transpose()?))
    }

    fn unmerge(&mut self, _weight: &Tensor, _bias: Option<&Tensor>) -> Result<(Tensor, Option<Tensor>)> {
        match self.original.take() {
            Some(o) => Ok(o),
            None => anyhow::bail!("this module copy was not merged"),
        }
    }
}
