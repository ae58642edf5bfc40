//! A new LoRA adapter made from several, as PEFT's `add_weighted_adapter`: `linear` sums
//! √(w·s)-weighted A's and B's (same rank), `cat` stacks w·s·A's and B's (ranks add), `svd`
//! factors Σ w·ΔW at a chosen rank. The new adapter has alpha = r (its scale folded in) and is
//! added inactive.

use anyhow::{bail, Context, Result};
use tch::{Kind, Tensor};

use super::config::LoraConfig;
use super::inject::add;
use super::lora::LoraLayer;
use super::targets::Targets;
use super::{linear, linear_mut, Method};
use crate::models::model::Model;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum How {
    Linear,
    Cat,
    Svd,
}

impl How {
    pub fn parse(s: &str) -> Result<How> {
        Ok(match s {
            "linear" => How::Linear,
            "cat" => How::Cat,
            "svd" => How::Svd,
            other => bail!("how = '{other}' is not one of \"linear\", \"cat\", \"svd\""),
        })
    }
}

fn lora_config(model: &Model, name: &str) -> Result<LoraConfig> {
    match &model.adapters.get(name)?.method {
        Method::Lora(c) if c.use_dora => bail!("adapter '{name}' is DoRA: its magnitudes do not combine"),
        Method::Lora(c) => Ok(c.clone()),
        _ => bail!("adapter '{name}' is not LoRA: only LoRA adapters combine"),
    }
}

fn lora_on<'a>(model: &'a Model, layer: &str, name: &str) -> Result<Option<&'a LoraLayer>> {
    Ok(linear(model, layer)?.adapters.slots().iter().find(|s| s.name == name).and_then(|s| s.adapter.as_any().downcast_ref::<LoraLayer>()))
}

/// Adds adapter `new_name` combining `names` with `weights`.
pub fn combine(model: &mut Model, names: &[String], weights: &[f64], how: How, new_name: &str, svd_rank: Option<i64>) -> Result<()> {
    if names.is_empty() {
        bail!("give the adapters to combine");
    }
    if names.len() != weights.len() {
        bail!("{} adapters but {} weights", names.len(), weights.len());
    }
    let configs = names.iter().map(|n| lora_config(model, n)).collect::<Result<Vec<_>>>()?;
    let how = if names.len() == 1 { How::Linear } else { how };
    let ranks: Vec<i64> = configs.iter().map(|c| c.rank_pattern.iter().map(|(_, r)| *r).fold(c.r, i64::max)).collect();
    let new_rank = match how {
        How::Linear => {
            if ranks.iter().any(|r| *r != ranks[0]) {
                bail!("how = \"linear\" needs adapters of one rank, got ranks {ranks:?} (use \"cat\" or \"svd\")");
            }
            ranks[0]
        }
        How::Cat => ranks.iter().sum(),
        How::Svd => svd_rank.unwrap_or_else(|| *ranks.iter().max().unwrap_or(&1)),
    };
    let mut layers: Vec<String> = Vec::new();
    for n in names {
        for l in &model.adapters.get(n)?.layers {
            if !layers.contains(l) {
                layers.push(l.clone());
            }
        }
    }
    let mut config = configs[0].clone();
    config.r = new_rank;
    config.alpha = new_rank as f64;
    config.rank_pattern.clear();
    config.alpha_pattern.clear();
    config.selection.targets = Targets::Names(layers.clone());
    config.selection.layers_to_transform = None;
    config.selection.layers_pattern.clear();
    config.selection.exclude = None;
    config.selection.modules_to_save.clear();
    // Every factor is computed before the adapter is added.
    let mut factors = Vec::new();
    {
        let _guard = tch::no_grad_guard();
        for layer in &layers {
            let mut parts: Vec<(&LoraLayer, f64)> = Vec::new();
            for (n, w) in names.iter().zip(weights) {
                if let Some(l) = lora_on(model, layer, n)? {
                    parts.push((l, *w));
                }
            }
            factors.push(factor(&parts, how, new_rank).with_context(|| format!("combining on '{layer}'"))?);
        }
    }
    add(model, new_name, Method::Lora(config), None, false)?;
    let _guard = tch::no_grad_guard();
    for (layer, (a, b)) in layers.iter().zip(factors) {
        let l = linear_mut(model, layer)?;
        let slot = l.adapters.slots_mut().iter_mut().find(|s| s.name == new_name).context("the new adapter is missing")?;
        let new = slot.adapter.as_any_mut().downcast_mut::<LoraLayer>().context("the new adapter is not LoRA")?;
        new.lora_a.f_copy_(&a)?;
        new.lora_b.f_copy_(&b)?;
    }
    Ok(())
}

/// (A, B) of the combined adapter on one layer.
fn factor(parts: &[(&LoraLayer, f64)], how: How, rank: i64) -> Result<(Tensor, Tensor)> {
    let kind = parts[0].0.lora_a.kind();
    match how {
        How::Linear => {
            let mut a: Option<Tensor> = None;
            let mut b: Option<Tensor> = None;
            for (l, w) in parts {
                let ws = w * l.scaling;
                let (wa, wb) = (ws.abs().sqrt() * ws.signum(), ws.abs().sqrt());
                let (ta, tb) = (l.lora_a.f_mul_scalar(wa)?, l.lora_b.f_mul_scalar(wb)?);
                a = Some(match a { Some(x) => x.f_add(&ta)?, None => ta });
                b = Some(match b { Some(x) => x.f_add(&tb)?, None => tb });
            }
            Ok((a.context("no parts")?, b.context("no parts")?))
        }
        How::Cat => {
            let a: Vec<Tensor> = parts.iter().map(|(l, w)| l.lora_a.f_mul_scalar(w * l.scaling)).collect::<Result<_, _>>()?;
            let b: Vec<Tensor> = parts.iter().map(|(l, _)| l.lora_b.shallow_clone()).collect();
            let (a, b) = (Tensor::f_cat(&a, 0)?, Tensor::f_cat(&b, 1)?);
            // A layer some adapters lack gets zeros in their rows (as PEFT leaves them).
            let have = a.size()[0];
            if have < rank {
                let pad_a = Tensor::f_zeros([rank - have, a.size()[1]], (kind, a.device()))?;
                let pad_b = Tensor::f_zeros([b.size()[0], rank - have], (kind, b.device()))?;
                return Ok((Tensor::f_cat(&[a, pad_a], 0)?, Tensor::f_cat(&[b, pad_b], 1)?));
            }
            Ok((a, b))
        }
        How::Svd => {
            let mut delta: Option<Tensor> = None;
            for (l, w) in parts {
                let d = l.delta_weight()?.f_mul_scalar(*w)?;
                delta = Some(match delta { Some(x) => x.f_add(&d)?, None => d });
            }
            let delta = delta.context("no parts")?;
            let (out, n_in) = (delta.size()[0], delta.size()[1]);
            if rank > out.min(n_in) {
                bail!("svd rank {rank} exceeds the layer's smaller side ({})", out.min(n_in));
            }
            let (u, s, v) = delta.f_to_kind(Kind::Float)?.f_svd(true, true)?;
            let vh = v.f_tr()?;
            let b = u.f_narrow(1, 0, rank)?.f_mul(&s.f_narrow(0, 0, rank)?.f_unsqueeze(0)?)?;
            let a = vh.f_narrow(0, 0, rank)?;
            Ok((a.f_to_kind(kind)?, b.f_to_kind(kind)?))
        }
    }
}
