//! Functional ops with PyTorch's semantics (`torch.nn.functional`): losses, linear, embedding,
//! normalisations, dropout and attention. Shapes follow PyTorch; each checks what libtorch
//! would report less clearly.

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

use crate::tensor::dtype::is_floating;
use crate::tensor::dtype_name;
use crate::tensor::{guard, shim};

/// How a loss reduces over elements.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reduction {
    Mean,
    Sum,
    None,
}

impl Reduction {
    pub fn parse(name: &str) -> Result<Reduction> {
        match name {
            "mean" => Ok(Reduction::Mean),
            "sum" => Ok(Reduction::Sum),
            "none" => Ok(Reduction::None),
            other => bail!("unknown reduction '{other}' (expected 'mean', 'sum' or 'none')"),
        }
    }

    fn tch(self) -> tch::Reduction {
        match self {
            Reduction::Mean => tch::Reduction::Mean,
            Reduction::Sum => tch::Reduction::Sum,
            Reduction::None => tch::Reduction::None,
        }
    }
}

/// Cross-entropy of `logits` (N, C) or (N, C, d…) against int64 class ids `target` (N) or
/// (N, d…); ids equal to `ignore_index` do not count. As `F.cross_entropy`.
pub fn cross_entropy(
    logits: &Tensor,
    target: &Tensor,
    ignore_index: i64,
    label_smoothing: f64,
    reduction: Reduction,
) -> Result<Tensor> {
    if !is_floating(logits.f_kind()?) {
        bail!("input must be floating-point logits, got {}", dtype_name(logits.kind()));
    }
    if target.f_kind()? != Kind::Int64 {
        bail!("target must be int64 class ids, got {} (use :long())", dtype_name(target.kind()));
    }
    if !(0.0..=1.0).contains(&label_smoothing) {
        bail!("label_smoothing must be in [0, 1], got {label_smoothing}");
    }
    Ok(logits.f_cross_entropy_loss(
        target,
        None::<Tensor>,
        reduction.tch(),
        ignore_index,
        label_smoothing,
    )?)
}

/// Mean squared error, as `F.mse_loss`.
pub fn mse_loss(input: &Tensor, target: &Tensor, reduction: Reduction) -> Result<Tensor> {
    if input.size() != target.size() {
        bail!("input shape {:?} and target shape {:?} differ", input.size(), target.size());
    }
    Ok(input.f_mse_loss(target, reduction.tch())?)
}

/// `x @ weight.T + bias` with `weight` (out, in), as `F.linear`.
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let (w, last) = (weight.size(), x.size().last().copied());
    if w.len() != 2 || last != Some(w[1]) {
        bail!("input of shape {:?} does not fit a weight of shape {:?} (expected last dim {})", x.size(), w, w.get(1).copied().unwrap_or(0));
    }
    Ok(x.f_linear(weight, bias)?)
}

/// Rows of `weight` (num, dim) picked by int64 `ids`, as `F.embedding`.
pub fn embedding(ids: &Tensor, weight: &Tensor, padding_idx: Option<i64>) -> Result<Tensor> {
    if !matches!(ids.f_kind()?, Kind::Int64 | Kind::Int) {
        bail!("ids must be an integer tensor, got {}", dtype_name(ids.kind()));
    }
    Ok(Tensor::f_embedding(weight, ids, padding_idx.unwrap_or(-1), false, false)?)
}

/// Layer normalisation over the trailing `shape`, as `F.layer_norm`.
pub fn layer_norm(x: &Tensor, shape: &[i64], weight: Option<&Tensor>, bias: Option<&Tensor>, eps: f64) -> Result<Tensor> {
    Ok(x.f_layer_norm(shape, weight, bias, eps, true)?)
}

/// RMS normalisation over the trailing `shape`, as `F.rms_norm` (eps `None` = dtype epsilon).
pub fn rms_norm(x: &Tensor, shape: &[i64], weight: Option<&Tensor>, eps: Option<f64>) -> Result<Tensor> {
    Ok(x.f_rms_norm(shape, weight, eps)?)
}

/// Dropout with probability `p` when `train`; identity otherwise.
pub fn dropout(x: &Tensor, p: f64, train: bool) -> Result<Tensor> {
    if !(0.0..=1.0).contains(&p) {
        bail!("dropout probability must be in [0, 1], got {p}");
    }
    Ok(x.f_dropout(p, train)?)
}

/// Options of scaled dot-product attention, as `F.scaled_dot_product_attention`.
#[derive(Default)]
pub struct AttentionOptions<'a> {
    pub mask: Option<&'a Tensor>,
    pub dropout_p: f64,
    pub is_causal: bool,
    pub scale: Option<f64>,
    pub enable_gqa: bool,
}

/// softmax(q kᵀ · scale + mask) v over (…, L, E) queries and (…, S, E) keys and values.
pub fn scaled_dot_product_attention(q: &Tensor, k: &Tensor, v: &Tensor, o: &AttentionOptions) -> Result<Tensor> {
    if q.dim() < 2 || k.dim() != q.dim() || v.dim() != q.dim() {
        bail!("query, key and value must have the same rank ≥ 2, got {:?}, {:?}, {:?}", q.size(), k.size(), v.size());
    }
    if o.mask.is_some() && o.is_causal {
        bail!("give either a mask or is_causal, not both");
    }
    Ok(Tensor::f_scaled_dot_product_attention(q, k, v, o.mask, o.dropout_p, o.is_causal, o.scale, o.enable_gqa)?)
}

/// `x / max(‖x‖_p, eps)` along `dim`, as `F.normalize`.
pub fn normalize(x: &Tensor, p: f64, dim: i64, eps: f64) -> Result<Tensor> {
    if !is_floating(x.f_kind()?) {
        bail!("normalize needs a floating-point tensor, got {}", dtype_name(x.kind()));
    }
    guard::catch(|| {
        let norm = x.f_norm_scalaropt_dim(p, [dim].as_slice(), true)?.f_clamp_min(eps)?;
        Ok(x.f_div(&norm.f_expand_as(x)?)?)
    })
}

/// Cosine similarity of `a` and `b` along `dim`, as `F.cosine_similarity`.
pub fn cosine_similarity(a: &Tensor, b: &Tensor, dim: i64, eps: f64) -> Result<Tensor> {
    Ok(Tensor::f_cosine_similarity(a, b, dim, eps)?)
}

fn same_shape(what: &str, input: &Tensor, target: &Tensor) -> Result<()> {
    if input.size() != target.size() {
        bail!("{what}: input shape {:?} and target shape {:?} differ", input.size(), target.size());
    }
    Ok(())
}

/// Binary cross-entropy of logits against targets in [0, 1] (same shape), with optional
/// per-element `weight` and per-class `pos_weight`, as `F.binary_cross_entropy_with_logits`.
pub fn binary_cross_entropy_with_logits(logits: &Tensor, target: &Tensor, weight: Option<&Tensor>, pos_weight: Option<&Tensor>, reduction: Reduction) -> Result<Tensor> {
    same_shape("binary_cross_entropy_with_logits", logits, target)?;
    Ok(logits.f_binary_cross_entropy_with_logits(target, weight, pos_weight, reduction.tch())?)
}

/// Binary cross-entropy of probabilities in [0, 1] against targets, as `F.binary_cross_entropy`.
pub fn binary_cross_entropy(probs: &Tensor, target: &Tensor, weight: Option<&Tensor>, reduction: Reduction) -> Result<Tensor> {
    same_shape("binary_cross_entropy", probs, target)?;
    Ok(probs.f_binary_cross_entropy(target, weight, reduction.tch())?)
}

/// Negative log-likelihood of log-probabilities (N, C) or (N, C, d…) at int64 class ids, as
/// `F.nll_loss`.
pub fn nll_loss(log_probs: &Tensor, target: &Tensor, weight: Option<&Tensor>, ignore_index: i64, reduction: Reduction) -> Result<Tensor> {
    if target.f_kind()? != Kind::Int64 {
        bail!("target must be int64 class ids, got {} (use :long())", dtype_name(target.kind()));
    }
    Ok(log_probs.f_nll_loss_nd(target, weight, reduction.tch(), ignore_index)?)
}

/// How `kl_div` reduces: PyTorch's reductions and `batchmean` (the sum over the batch size,
/// the true KL divergence).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KlReduction {
    Plain(Reduction),
    BatchMean,
}

/// KL divergence with `input` in log-space and `target` as probabilities (or log-probabilities
/// with `log_target`), as `F.kl_div`.
pub fn kl_div(input: &Tensor, target: &Tensor, reduction: KlReduction, log_target: bool) -> Result<Tensor> {
    Ok(match reduction {
        KlReduction::Plain(r) => input.f_kl_div(target, r.tch(), log_target)?,
        KlReduction::BatchMean => {
            let batch = input.size().first().copied().unwrap_or(1).max(1);
            input.f_kl_div(target, tch::Reduction::Sum, log_target)?.f_div(&shim::wrapped_int(batch)?)?
        }
    })
}

/// Pads the last dims: `pad` is (left, right) for the last dim, then (left, right) for the one
/// before, …; `mode` "constant" (with `value`), "reflect", "replicate" or "circular", as `F.pad`.
pub fn pad(x: &Tensor, pad: &[i64], mode: &str, value: f64) -> Result<Tensor> {
    if pad.len() % 2 != 0 || pad.len() / 2 > x.dim() {
        bail!("pad must hold (left, right) pairs for at most {} dims, got {} values", x.dim(), pad.len());
    }
    if !["constant", "reflect", "replicate", "circular"].contains(&mode) {
        bail!("unknown pad mode '{mode}' (expected constant, reflect, replicate or circular)");
    }
    let value = (mode == "constant").then_some(value);
    Ok(x.f_pad(pad, mode, value)?)
}

/// int64 class ids → (…, num_classes) int64 one-hot rows (`num_classes` -1: the largest id + 1),
/// as `F.one_hot`.
pub fn one_hot(ids: &Tensor, num_classes: i64) -> Result<Tensor> {
    if ids.f_kind()? != Kind::Int64 {
        bail!("one_hot needs int64 ids, got {}", dtype_name(ids.kind()));
    }
    Ok(ids.f_one_hot(num_classes)?)
}
