//! QLoRA's base (Dettmers et al. 2023): `mt.peft.quantize` stores a model's frozen linear weights
//! in 4 bits (nn::fourbit: NF4 or FP4 codes, absmax per block, optionally double-quantised), each
//! de-quantised layer by layer at its forward; adapters then train on top. And what the model's
//! memory goes to, by kind (`model:memory_report()`).

use anyhow::{bail, Result};
use tch::Kind;

use super::linear_mut;
use crate::models::model::Model;
use crate::nn::fourbit::{Format, FourBit};
use crate::nn::linear::{Layout, Linear};
use crate::nn::module::{self, Owner};
use crate::nn::names::NameMatcher;
use crate::tensor::dtype::is_floating;

pub struct QuantizeOptions {
    pub format: Format,
    pub block: i64,
    pub double_quant: bool,
    pub compute: Kind,
    /// Layers left in full precision (default the output head, as transformers' bitsandbytes
    /// integration leaves it).
    pub skip: Vec<String>,
}

/// Quantises every floating-point linear layer not in `skip` (a tied head, whose weight is the
/// embedding's, is left as it is); returns how many.
pub fn quantize(model: &mut Model, o: &QuantizeOptions) -> Result<usize> {
    if !is_floating(o.compute) {
        bail!("compute_dtype must be floating-point");
    }
    let skip = if o.skip.is_empty() { None } else { Some(NameMatcher::suffixes(o.skip.clone())?) };
    let mut names = Vec::new();
    for (name, m) in module::named_modules(model.root()) {
        let Some(l) = m.as_any().downcast_ref::<Linear>() else { continue };
        if name.contains(".adapters.") || l.tied || !matches!(l.layout, Layout::OutIn | Layout::InOut) {
            continue;
        }
        if let Some(s) = &skip {
            if s.matches(&name)? {
                continue;
            }
        }
        if l.adapters.slots().iter().any(|s| s.merged) {
            bail!("'{name}' has an adapter merged into it; unmerge before quantising");
        }
        names.push(name);
    }
    if names.is_empty() {
        bail!("no linear layer to quantise (every one is skipped, tied or already quantised)");
    }
    // Quantise all before replacing any, so that a failure leaves the model as it was.
    let mut stored = Vec::new();
    for name in &names {
        let l = super::linear(model, name)?;
        stored.push(FourBit::quantize(&l.weight_out_in()?, o.format, o.block, o.double_quant, o.compute)?);
    }
    for (name, q) in names.iter().zip(stored) {
        let l = linear_mut(model, name)?;
        l.store_four_bit(q);
    }
    // The float weights just freed would otherwise stay resident.
    crate::tensor::allocator::release_free_memory();
    Ok(names.len())
}

/// Bytes by kind.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MemoryReport {
    /// Weights kept quantised: 4-bit codes, GGUF blocks.
    pub quantized: i64,
    /// Their constants (absmax per block, and their own scales).
    pub constants: i64,
    /// Full-precision weights of the base model.
    pub weights: i64,
    /// The adapters' parameters.
    pub adapters: i64,
}

pub fn memory_report(model: &Model) -> Result<MemoryReport> {
    let mut r = MemoryReport::default();
    for p in model.named_parameters() {
        let bytes = p.tensor.numel() as i64 * p.tensor.kind().elt_size_in_bytes() as i64;
        match (&p.owner, is_floating(p.tensor.kind())) {
            (Owner::Adapter(_), _) => r.adapters += bytes,
            (Owner::Base, true) => r.weights += bytes,
            (Owner::Base, false) => r.quantized += bytes,
        }
    }
    for (_, m) in module::named_modules(model.root()) {
        if let Some(q) = m.as_any().downcast_ref::<Linear>().and_then(|l| l.fourbit.as_ref()) {
            r.constants += q.bytes().1;
        }
    }
    Ok(r)
}
