//! Folding adapters into the base weights and back, as PEFT's `merge_adapter`,
//! `unmerge_adapter` and `merge_and_unload`: W ← W + s·BA for LoRA, the DoRA-rescaled rows,
//! IA3's scaled rows or columns, and a `modules_to_save` copy replacing its layer. A merged
//! adapter stays attached but its forward is skipped, so outputs do not change.

use anyhow::{bail, Result};
use serde_json::Value;

use super::saved::SavedModule;
use super::{linear, linear_mut};
use crate::models::model::Model;
use crate::nn::linear::Layout;

/// The layers adapter `name` is on.
fn layers_of(model: &Model, name: &str) -> Result<Vec<String>> {
    let a = model.adapters.get(name)?;
    Ok(a.layers.iter().chain(&a.saved).cloned().collect())
}

/// Merges `names` (default: the active adapters) into the base weights.
pub fn merge_adapter(model: &mut Model, names: Option<Vec<String>>) -> Result<()> {
    let names = names.unwrap_or_else(|| model.adapters.active.clone());
    if names.is_empty() {
        bail!("no adapter is active: nothing to merge ({})", model.adapters.names_text());
    }
    for n in &names {
        if model.adapters.get(n)?.method.is_prompt() {
            bail!("adapter '{n}' adds virtual tokens (prompt or prefix tuning): it has no weights to merge into");
        }
        for layer in layers_of(model, n)? {
            if matches!(linear(model, &layer)?.layout, Layout::Quantized { .. } | Layout::FourBit) {
                bail!("'{layer}' keeps its weight quantised: adapters cannot be merged into it; merge into the model loaded in full precision");
            }
        }
    }
    let _guard = tch::no_grad_guard();
    for n in &names {
        for layer in layers_of(model, n)? {
            let l = linear_mut(model, &layer)?;
            let weight = l.weight_out_in()?;
            let bias = l.bias.as_ref().map(|b| b.shallow_clone());
            let Some(slot) = l.adapters.slots_mut().iter_mut().find(|s| &s.name == n) else { continue };
            if slot.merged {
                continue;
            }
            let untie = l.tied && slot.adapter.as_any().downcast_ref::<SavedModule>().is_some();
            let (w, b) = slot.adapter.merge(&weight, bias.as_ref())?;
            slot.merged = true;
            if untie {
                // The copy replaces a head tied to the embedding: the head gets its own weight.
                l.weight = w.f_detach_copy()?;
                l.tied = false;
                model.config.json.insert("tie_word_embeddings".into(), Value::Bool(false));
            } else {
                l.set_weight_out_in(&w)?;
            }
            let l = linear_mut(model, &layer)?;
            if let (Some(target), Some(b)) = (&l.bias, b) {
                let mut target = target.shallow_clone();
                target.f_copy_(&b)?;
            }
        }
    }
    Ok(())
}

/// Undoes every merge, last merged first.
pub fn unmerge_adapter(model: &mut Model) -> Result<()> {
    let _guard = tch::no_grad_guard();
    let names: Vec<String> = model.adapters.adapters.iter().rev().map(|a| a.name.clone()).collect();
    for n in &names {
        for layer in layers_of(model, n)?.into_iter().rev() {
            let l = linear_mut(model, &layer)?;
            let weight = l.weight_out_in()?;
            let bias = l.bias.as_ref().map(|b| b.shallow_clone());
            let Some(slot) = l.adapters.slots_mut().iter_mut().find(|s| &s.name == n && s.merged) else { continue };
            let (w, b) = slot.adapter.unmerge(&weight, bias.as_ref())?;
            slot.merged = false;
            l.set_weight_out_in(&w)?;
            if let (Some(target), Some(b)) = (&l.bias, b) {
                let mut target = target.shallow_clone();
                target.f_copy_(&b)?;
            }
        }
    }
    Ok(())
}

/// Merges the active adapters and removes every adapter: the plain base model, changed.
pub fn merge_and_unload(model: &mut Model) -> Result<()> {
    if let Some(p) = model.adapters.adapters.iter().find(|a| a.method.is_prompt()) {
        bail!("adapter '{}' adds virtual tokens (prompt or prefix tuning), which cannot be merged into the weights; delete it first (model:delete_adapter)", p.name);
    }
    if !model.adapters.active.is_empty() {
        merge_adapter(model, None)?;
    }
    for a in model.adapters.adapters.clone() {
        for layer in a.layers.iter().chain(&a.saved) {
            linear_mut(model, layer)?.adapters.detach(&a.name)?;
        }
    }
    model.adapters = Default::default();
    Ok(())
}
