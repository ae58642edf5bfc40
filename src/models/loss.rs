//! transformers' causal-LM loss (`ForCausalLMLoss`): logits at t predict labels at t+1; -100 is
//! ignored; the mean over the rest, in float32. As there, the labels are shifted (padded with
//! -100 at the end) rather than the logits, so that the logits are not copied. Computed from the
//! logits, or fused with a bare output head (`causal_lm_loss_fused`): the head and the loss run
//! chunk by chunk and the (tokens × vocabulary) logits are never made.

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

use crate::tensor::shim;

/// Labels (B, T) shifted one to the left and flattened: the target of each position.
fn shifted_labels(labels: &Tensor, expected: &[i64]) -> Result<Tensor> {
    let size = labels.size();
    if size != expected {
        bail!("labels have shape {size:?}, expected {expected:?} (batch, seq)");
    }
    if labels.kind() != Kind::Int64 {
        bail!("labels must be int64, got {}", crate::tensor::dtype_name(labels.kind()));
    }
    let (b, t) = (size[0], size[1]);
    let ignored = Tensor::f_full([b, 1], -100, (Kind::Int64, labels.device()))?;
    Ok(Tensor::f_cat(&[&labels.f_narrow(1, 1, t - 1)?, &ignored], 1)?.f_reshape([-1])?)
}

/// The loss from logits (B, T, vocab).
pub fn causal_lm_loss(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let size = logits.size();
    if size.len() != 3 {
        bail!("logits have shape {size:?}, expected (batch, seq, vocab)");
    }
    let shifted = shifted_labels(labels, &size[..2])?;
    let logits = logits.f_to_kind(Kind::Float)?.f_reshape([-1, size[2]])?;
    Ok(logits.f_cross_entropy_loss(&shifted, None::<Tensor>, tch::Reduction::Mean, -100, 0.0)?)
}

/// Rows of the fused head and loss at a time: about 2M logits (8 MiB in float32), which kept
/// the softmax passes in cache and the products large enough here (stories260K to SmolLM2).
fn chunk_rows(vocab: i64) -> i64 {
    ((1 << 21) / vocab.max(1)).clamp(16, 4096)
}

/// The same loss from the final hidden states (B, T, hidden) and the head's weight (vocab,
/// hidden), fused (src/tensor/linear_cross_entropy.cpp).
pub fn causal_lm_loss_fused(hidden: &Tensor, head_weight: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let size = hidden.size();
    if size.len() != 3 {
        bail!("hidden states have shape {size:?}, expected (batch, seq, hidden)");
    }
    let shifted = shifted_labels(labels, &size[..2])?;
    let flat = hidden.f_reshape([-1, size[2]])?;
    shim::linear_cross_entropy(&flat, head_weight, &shifted, chunk_rows(head_weight.size()[0]))
}
