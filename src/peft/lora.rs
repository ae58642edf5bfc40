//! LoRA on a linear layer (Hu et al. 2021, as PEFT 0.21's `lora.Linear`): `y = base(x) +
//! s · B(A(dropout(x)))` with A (r, in), B (out, r) and s = alpha / r (alpha / √r with rsLoRA).
//! With DoRA (Liu et al. 2024) a magnitude vector m (out) rescales the adapted weight row by
//! row: `y = m / ‖W + s·BA‖ ⊙ (W x + s·B A x)`, the norm detached from the graph as the paper
//! and PEFT do. Initialisations as PEFT's: kaiming-uniform A and zero B, Gaussian A, PiSSA
//! (A, B from the top-r SVD of W, which keeps the residual) and OLoRA (from a QR of W).

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

use super::config::LoraInit;
use crate::module_children;
use crate::nn::attach::LinearAdapter;
use crate::nn::hooks::Ctx;
use crate::nn::init::kaiming_uniform_;
use crate::nn::linear::Linear;
use crate::nn::module::{Module, Owner};

pub struct LoraLayer {
    pub owner: String,
    /// (r, in)
    pub lora_a: Tensor,
    /// (out, r)
    pub lora_b: Tensor,
    /// DoRA's magnitude (out), or None for plain LoRA.
    pub magnitude: Option<Tensor>,
    pub scaling: f64,
    pub dropout: f64,
    /// DoRA's m / ‖W + ΔW‖ at merge time, to unmerge.
    dora_factor: Option<Tensor>,
}

/// What a new LoRA layer needs besides its base layer.
pub struct LoraSpec {
    pub r: i64,
    pub scaling: f64,
    pub dropout: f64,
    pub dora: bool,
    pub init: LoraInit,
    /// The dtype adapter weights are kept in.
    pub kind: Kind,
}

impl LoraLayer {
    /// A new layer for `base`; with PiSSA or OLoRA also the base weight (out, in) that must
    /// replace the current one (the residual), which the caller writes once every layer is made.
    pub fn new(owner: &str, base: &Linear, spec: &LoraSpec) -> Result<(LoraLayer, Option<Tensor>)> {
        let _guard = tch::no_grad_guard();
        let device = base.weight.device();
        let opts = (spec.kind, device);
        let (r, n_in, n_out) = (spec.r, base.in_features, base.out_features);
        let mut a = Tensor::f_zeros([r, n_in], opts)?;
        let mut b = Tensor::f_zeros([n_out, r], opts)?;
        let mut residual = None;
        match spec.init {
            LoraInit::Default => kaiming_uniform_(&mut a, 5f64.sqrt())?,
            LoraInit::Random => {
                kaiming_uniform_(&mut a, 5f64.sqrt())?;
                kaiming_uniform_(&mut b, 5f64.sqrt())?;
            }
            LoraInit::Gaussian => {
                let _ = a.f_normal_(0.0, 1.0 / r as f64)?;
            }
            LoraInit::Pissa | LoraInit::Olora => {
                let w = base.weight_out_in()?.f_to_kind(Kind::Float)?;
                let (new_a, new_b) = if spec.init == LoraInit::Pissa { pissa(&w, r, spec.scaling)? } else { olora(&w, r)? };
                residual = Some(w.f_sub(&new_b.f_matmul(&new_a)?.f_mul_scalar(spec.scaling)?)?.f_to_kind(base.weight_out_in()?.kind())?);
                a = new_a.f_to_kind(spec.kind)?;
                b = new_b.f_to_kind(spec.kind)?;
            }
        }
        let magnitude = if spec.dora {
            // ‖W + s·BA‖ per output row, from the weight the layer will have.
            let w = match &residual {
                Some(w) => w.shallow_clone(),
                None => base.weight_out_in()?,
            };
            let adapted = w.f_to_kind(spec.kind)?.f_add(&b.f_matmul(&a)?.f_mul_scalar(spec.scaling)?)?;
            Some(row_norm(&adapted)?)
        } else {
            None
        };
        let layer = LoraLayer {
            owner: owner.to_string(),
            lora_a: a.f_set_requires_grad(true)?,
            lora_b: b.f_set_requires_grad(true)?,
            magnitude: magnitude.map(|m| m.f_set_requires_grad(true)).transpose()?,
            scaling: spec.scaling,
            dropout: spec.dropout,
            dora_factor: None,
        };
        Ok((layer, residual))
    }

    pub fn rank(&self) -> i64 {
        self.lora_a.size()[0]
    }

    /// s · B A, (out, in).
    pub fn delta_weight(&self) -> Result<Tensor> {
        Ok(self.lora_b.f_matmul(&self.lora_a)?.f_mul_scalar(self.scaling)?)
    }
}

/// ‖w‖ over each row, float32 computed, in w's dtype.
fn row_norm(w: &Tensor) -> Result<Tensor> {
    Ok(w.f_to_kind(Kind::Float)?.f_norm_scalaropt_dim(2.0, [1i64], false)?.f_to_kind(w.kind())?)
}

/// PiSSA: W = V S Uᵀ; A = √(S_r/s) U_rᵀ, B = V_r √(S_r/s).
fn pissa(w: &Tensor, r: i64, scaling: f64) -> Result<(Tensor, Tensor)> {
    let (v, s, u) = w.f_svd(true, true)?;
    let uh = u.f_tr()?;
    let sr = s.f_narrow(0, 0, r)?.f_div_scalar(scaling)?.f_sqrt()?;
    let a = sr.f_unsqueeze(1)?.f_mul(&uh.f_narrow(0, 0, r)?)?;
    let b = v.f_narrow(1, 0, r)?.f_mul(&sr.f_unsqueeze(0)?)?;
    Ok((a, b))
}

/// OLoRA: W = Q R; A = R[:r], B = Q[:, :r].
fn olora(w: &Tensor, r: i64) -> Result<(Tensor, Tensor)> {
    let (q, rr) = Tensor::f_linalg_qr(w, "reduced")?;
    Ok((rr.f_narrow(0, 0, r)?.f_contiguous()?, q.f_narrow(1, 0, r)?.f_contiguous()?))
}

impl Module for LoraLayer {
    fn class_name(&self) -> &'static str {
        if self.magnitude.is_some() {
            "DoraLinear"
        } else {
            "LoraLinear"
        }
    }

    fn own_parameters(&self) -> Vec<(&str, &Tensor)> {
        let mut out = vec![("lora_A.weight", &self.lora_a), ("lora_B.weight", &self.lora_b)];
        if let Some(m) = &self.magnitude {
            out.push(("lora_magnitude_vector", m));
        }
        out
    }

    fn owner(&self) -> Owner {
        Owner::Adapter(self.owner.clone())
    }

    fn extra_repr(&self) -> String {
        format!("r={}, scaling={}, dropout={}", self.rank(), self.scaling, self.dropout)
    }

    module_children!();
}

impl LinearAdapter for LoraLayer {
    fn forward(&self, ctx: &Ctx, base: &Linear, x: &Tensor, base_out: Tensor) -> Result<Tensor> {
        let out_kind = base_out.kind();
        let x = if x.kind() != self.lora_a.kind() { x.f_to_kind(self.lora_a.kind())? } else { x.shallow_clone() };
        let dropped = ctx.training && self.dropout > 0.0;
        let xd = if dropped { x.f_dropout(self.dropout, true)? } else { x.shallow_clone() };
        // The scaling is applied to the rank-r intermediate, not to the (…, out) product: the
        // same number up to rounding, and an elementwise pass over r columns instead of out in
        // the forward and again in the backward.
        let lora = xd.f_linear(&self.lora_a, None::<Tensor>)?.f_mul_scalar(self.scaling)?.f_linear(&self.lora_b, None::<Tensor>)?;
        let delta = match &self.magnitude {
            None => lora,
            Some(m) => {
                let w = base.weight_out_in()?.f_to_kind(self.lora_a.kind())?;
                let norm = {
                    let _guard = tch::no_grad_guard();
                    row_norm(&w.f_add(&self.delta_weight()?)?)?
                };
                let scale = m.f_div(&norm)?;
                // The base output without its bias: from the dropped input when dropout ran
                // (as PEFT), else the base output itself.
                let base_plain = if dropped {
                    xd.f_linear(&w, None::<Tensor>)?
                } else {
                    let plain = base_out.f_to_kind(self.lora_a.kind())?;
                    match &base.bias {
                        Some(bias) => plain.f_sub(&bias.f_to_kind(self.lora_a.kind())?)?,
                        None => plain,
                    }
                };
                scale.f_sub_scalar(1.0)?.f_mul(&base_plain)?.f_add(&scale.f_mul(&lora)?)?
            }
        };
        Ok(base_out.f_add(&delta.f_to_kind(out_kind)?)?)
    }

    fn merge(&mut self, weight: &Tensor, bias: Option<&Tensor>) -> Result<(Tensor, Option<Tensor>)> {
        let delta = self.delta_weight()?.f_to_kind(weight.kind())?;
        let merged = weight.f_add(&delta)?;
        let merged = match &self.magnitude {
            None => merged,
            Some(m) => {
                let factor = m.f_to_kind(weight.kind())?.f_div(&row_norm(&merged)?)?.f_unsqueeze(1)?;
                let out = merged.f_mul(&factor)?;
                self.dora_factor = Some(factor);
                out
            }
        };
        Ok((merged, bias.map(|b| b.shallow_clone())))
    }

    fn unmerge(&mut self, weight: &Tensor, bias: Option<&Tensor>) -> Result<(Tensor, Option<Tensor>)> {
        let delta = self.delta_weight()?.f_to_kind(weight.kind())?;
        let w = match (&self.magnitude, self.dora_factor.take()) {
            (None, _) => weight.shallow_clone(),
            (Some(_), Some(factor)) => weight.f_div(&factor)?,
            (Some(_), None) => bail!("this DoRA adapter was not merged"),
        };
        Ok((w.f_sub(&delta)?, bias.map(|b| b.shallow_clone())))
    }
}
