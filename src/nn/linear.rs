//! `Linear`, the one linear layer of the loaded models: `y = x Wᵀ + b`, whose weight knows its
//! layout — (out, in) as `torch.nn.Linear`, or (in, out) as GPT-2's `Conv1D` (`y = x W + b`,
//! transformers' `pytorch_utils.Conv1D`) — and which carries the linear attachment point where
//! LoRA-style adapters hang. A head tied to the embedding is a `Linear` whose weight is the
//! embedding's (listed there, not here). A quantised weight (a GGUF loaded with `quantized`) is
//! the third layout: ggml blocks kept as a frozen uint8 parameter, de-quantised by `weight_out_in`
//! at each forward — a frozen base for adapters, as QLoRA's 4-bit one is.

use anyhow::Result;
use tch::{Kind, Tensor};

use super::attach::LinearPoint;
use super::fourbit::FourBit;
use super::hooks::Ctx;
use super::module::Module;
use super::weights::{Init, Weights};
use crate::gguf::dequant_torch;
use crate::gguf::GgmlType;
use crate::module_children;

/// How a `Linear`'s weight is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// (out, in), as `torch.nn.Linear`.
    OutIn,
    /// (in, out), as GPT-2's `Conv1D`.
    InOut,
    /// ggml blocks of an (out, in) matrix, uint8 (out, bytes per row), that de-quantise to `kind`.
    Quantized { ggml_type: GgmlType, kind: Kind },
    /// 4-bit NF4/FP4 codes of an (out, in) matrix (`mt.peft.quantize`), held in `fourbit`; the
    /// layer computes in its compute dtype.
    FourBit,
}

pub struct Linear {
    /// The module's dotted name in its model.
    pub name: String,
    pub in_features: i64,
    pub out_features: i64,
    pub weight: Tensor,
    pub layout: Layout,
    pub bias: Option<Tensor>,
    /// The weight belongs to another module (a head tied to the embedding).
    pub tied: bool,
    pub adapters: LinearPoint,
    /// The 4-bit weight and its constants (`Layout::FourBit`; `weight` is its codes).
    pub fourbit: Option<FourBit>,
}

impl Linear {
    /// Loads `name.weight` (and `name.bias`) stored in `layout`, or kept quantised where the
    /// weights hold it so.
    pub fn load(w: &mut Weights, name: &str, in_features: i64, out_features: i64, bias: bool, layout: Layout) -> Result<Linear> {
        let weight_name = format!("{name}.weight");
        let (weight, layout) = match (layout, w.take_quantized(&weight_name, out_features, in_features)?) {
            (Layout::OutIn, Some((ggml_type, blocks))) => (blocks, Layout::Quantized { ggml_type, kind: w.kind() }),
            (_, Some(_)) => anyhow::bail!("'{weight_name}' cannot be kept quantised in a {layout:?} layer"),
            (_, None) => {
                let shape = match layout {
                    Layout::InOut => [in_features, out_features],
                    _ => [out_features, in_features],
                };
                (w.param(&weight_name, &shape, Init::Normal)?, layout)
            }
        };
        let bias = if bias { Some(w.param(&format!("{name}.bias"), &[out_features], Init::Zeros)?) } else { None };
        Ok(Linear { name: name.to_string(), in_features, out_features, weight, layout, bias, tied: false, adapters: LinearPoint::default(), fourbit: None })
    }

    /// A bias-free (out, in) layer over another module's weight (a tied output head).
    pub fn tied(name: &str, weight: &Tensor) -> Linear {
        let size = weight.size();
        Linear {
            name: name.to_string(),
            in_features: size[1],
            out_features: size[0],
            weight: weight.shallow_clone(),
            layout: Layout::OutIn,
            bias: None,
            tied: true,
            adapters: LinearPoint::default(),
            fourbit: None,
        }
    }

    /// The weight as (out, in), whatever its layout (a view for (in, out)).
    pub fn weight_out_in(&self) -> Result<Tensor> {
        Ok(match self.layout {
            Layout::OutIn => self.weight.shallow_clone(),
            Layout::InOut => self.weight.f_tr()?,
            Layout::Quantized { ggml_type, kind } => dequant_torch::dequantize(ggml_type, &self.weight, &[self.out_features, self.in_features])?.f_to_kind(kind)?,
            Layout::FourBit => self.four_bit()?.dequantize()?,
        })
    }

    fn four_bit(&self) -> Result<&FourBit> {
        self.fourbit.as_ref().ok_or_else(|| anyhow::anyhow!("'{}' has a 4-bit layout but no 4-bit weight", self.name))
    }

    /// Replaces the weight by its 4-bit codes (`mt.peft.quantize`); frozen from then on.
    pub fn store_four_bit(&mut self, q: FourBit) {
        self.weight = q.packed.shallow_clone();
        self.layout = Layout::FourBit;
        self.tied = false;
        self.fourbit = Some(q);
    }

    /// The layer without its adapters. x (…, in) → (…, out).
    pub fn base_forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self.layout {
            Layout::OutIn => x.f_linear(&self.weight, self.bias.as_ref())?,
            Layout::Quantized { .. } => x.f_linear(&self.weight_out_in()?, self.bias.as_ref())?,
            // As bitsandbytes' Linear4bit: compute in the compute dtype, return the input's.
            Layout::FourBit => self.four_bit()?.linear(x, self.bias.as_ref())?,
            Layout::InOut => {
                // As Conv1D: addmm over the flattened leading dims.
                let size = x.size();
                let flat = x.f_reshape([-1, self.in_features])?;
                let out = match &self.bias {
                    Some(b) => b.f_addmm(&flat, &self.weight)?,
                    None => flat.f_mm(&self.weight)?,
                };
                let mut shape = size[..size.len() - 1].to_vec();
                shape.push(self.out_features);
                out.f_view(shape.as_slice())?
            }
        })
    }

    /// The (out, in) weight when the layer is that weight alone for this pass: a plain float
    /// layout, no bias, no active adapter, no hook on it. What the fused head-and-loss takes.
    pub fn bare_weight(&self, ctx: &Ctx) -> Option<&Tensor> {
        let plain = matches!(self.layout, Layout::OutIn) && self.bias.is_none() && self.adapters.is_idle(ctx) && !ctx.hooks.has(&self.name);
        plain.then_some(&self.weight)
    }

    /// x (…, in) → (…, out), with the active adapters and hooks.
    pub fn forward(&self, ctx: &Ctx, x: &Tensor) -> Result<Tensor> {
        let out = if self.adapters.is_idle(ctx) {
            self.base_forward(x)?
        } else {
            let out = match self.adapters.input(x)? {
                Some(scaled) => self.base_forward(&scaled)?,
                None => self.base_forward(x)?,
            };
            self.adapters.forward(ctx, self, x, out)?
        };
        ctx.output(&self.name, x, out)
    }

    /// Replaces the weight's values with `w` given as (out, in), in the layer's own layout,
    /// keeping the parameter's identity (merging adapters).
    pub fn set_weight_out_in(&mut self, w: &Tensor) -> Result<()> {
        let w = match self.layout {
            Layout::OutIn => w.shallow_clone(),
            Layout::InOut => w.f_tr()?,
            Layout::Quantized { ggml_type, .. } => anyhow::bail!("'{}' keeps its weight quantised ({}): an adapter cannot be merged into it; load the model without `quantized` to merge", self.name, ggml_type.name()),
            Layout::FourBit => anyhow::bail!("'{}' holds its weight in 4 bits: an adapter cannot be merged into it; merge into the model loaded without mt.peft.quantize", self.name),
        };
        let _guard = tch::no_grad_guard();
        self.weight.f_copy_(&w)?;
        Ok(())
    }
}

impl Module for Linear {
    fn class_name(&self) -> &'static str {
        match self.layout {
            Layout::OutIn | Layout::Quantized { .. } => "Linear",
            Layout::FourBit => "Linear4bit",
            Layout::InOut => "Conv1D",
        }
    }

    fn own_parameters(&self) -> Vec<(&str, &Tensor)> {
        let mut out = Vec::new();
        if !self.tied {
            out.push(("weight", &self.weight));
        }
        if let Some(b) = &self.bias {
            out.push(("bias", b));
        }
        out
    }

    fn own_buffers(&self) -> Vec<&Tensor> {
        self.fourbit.as_ref().map(FourBit::constants).unwrap_or_default()
    }

    fn parameter_elements(&self, name: &str, t: &Tensor) -> i64 {
        match self.layout {
            Layout::Quantized { .. } | Layout::FourBit if name == "weight" => self.out_features * self.in_features,
            _ => t.numel() as i64,
        }
    }

    fn extra_repr(&self) -> String {
        let tied = if self.tied { ", tied" } else { "" };
        let quantized = match self.layout {
            Layout::Quantized { ggml_type, .. } => format!(", quantized={}", ggml_type.name()),
            Layout::FourBit => self.fourbit.as_ref().map(|q| format!(", quantized={}, block_size={}", q.format.name(), q.block)).unwrap_or_default(),
            _ => String::new(),
        };
        format!("in_features={}, out_features={}, bias={}{tied}{quantized}", self.in_features, self.out_features, self.bias.is_some())
    }

    fn forward_tensor(&self, ctx: &Ctx, x: &Tensor) -> Option<Result<Tensor>> {
        Some(self.forward(ctx, x))
    }

    module_children!("adapters" => adapters.dict);
}
