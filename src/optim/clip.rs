//! Gradient clipping by total norm, as `torch.nn.utils.clip_grad_norm_`.

use anyhow::{bail, Result};
use tch::Tensor;

/// Scales all gradients so that their joint `norm_type`-norm is at most `max_norm`; returns the
/// norm before clipping. Parameters without a gradient are skipped.
pub fn clip_grad_norm(params: &[Tensor], max_norm: f64, norm_type: f64) -> Result<f64> {
    if !(norm_type == f64::INFINITY || norm_type > 0.0) {
        bail!("norm_type must be positive or inf, got {norm_type}");
    }
    let _guard = tch::no_grad_guard();
    let mut grads = Vec::new();
    for p in params {
        let g = p.f_grad()?;
        if g.defined() {
            grads.push(g);
        }
    }
    if grads.is_empty() {
        return Ok(0.0);
    }
    let norms = grads
        .iter()
        .map(|g| vector_norm(g, norm_type))
        .collect::<Result<Vec<_>>>()?;
    let total = vector_norm(&Tensor::f_stack(&norms, 0)?, norm_type)?;
    let coef = total.f_add_scalar(1e-6)?.f_reciprocal()?.f_mul_scalar(max_norm)?.f_clamp_max(1.0)?;
    for g in grads.iter_mut() {
        let c = coef.f_to_device(g.device())?.f_to_kind(g.kind())?;
        let _ = g.f_mul_(&c)?;
    }
    Ok(total.f_double_value(&[])?)
}

fn vector_norm(t: &Tensor, p: f64) -> Result<Tensor> {
    let dims: Vec<i64> = (0..t.dim() as i64).collect();
    if p == f64::INFINITY {
        return Ok(t.f_abs()?.f_max()?.f_to_kind(tch::Kind::Float)?);
    }
    Ok(t.f_norm_scalaropt_dim(p, dims.as_slice(), false)?.f_to_kind(tch::Kind::Float)?)
}
