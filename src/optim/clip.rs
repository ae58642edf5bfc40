//! Gradient clipping by total norm, as `torch.nn.utils.clip_grad_norm_` (its foreach path): the
//! norms of all gradients of one device and dtype in one `_foreach_norm`, the scaling in one
//! `_foreach_mul_`.

use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

use crate::tensor::{guard, shim};

/// Scales all gradients so that their joint `norm_type`-norm is at most `max_norm`; returns the
/// norm before clipping. Parameters without a gradient are skipped.
pub fn clip_grad_norm(params: &[Tensor], max_norm: f64, norm_type: f64) -> Result<f64> {
    if !(norm_type == f64::INFINITY || norm_type > 0.0) {
        bail!("norm_type must be positive or inf, got {norm_type}");
    }
    let _guard = tch::no_grad_guard();
    let mut buckets: Vec<((Device, Kind), Vec<Tensor>)> = Vec::new();
    for p in params {
        let g = p.f_grad()?;
        if !g.defined() {
            continue;
        }
        let key = (g.device(), g.kind());
        match buckets.iter_mut().find(|(k, _)| *k == key) {
            Some((_, list)) => list.push(g),
            None => buckets.push((key, vec![g])),
        }
    }
    let Some(((first_device, _), _)) = buckets.first() else { return Ok(0.0) };
    let first_device = *first_device;
    let mut norms = Vec::new();
    for (_, grads) in &buckets {
        for n in shim::norm(grads, norm_type)? {
            norms.push(n.f_to_device(first_device)?);
        }
    }
    let stacked = Tensor::f_stack(&norms, 0)?;
    let (total, coef) = guard::catch(|| {
        let total = if norm_type == f64::INFINITY { stacked.f_abs()?.f_max()? } else { stacked.f_norm_scalaropt_dim(norm_type, [0].as_slice(), false)? };
        let coef = total.f_add_scalar(1e-6)?.f_reciprocal()?.f_mul_scalar(max_norm)?.f_clamp_max(1.0)?;
        Ok((total, coef))
    })?;
    for ((device, _), grads) in &buckets {
        shim::mul_tensor_(grads, &coef.f_to_device(*device)?)?;
    }
    Ok(total.f_to_kind(Kind::Double)?.f_double_value(&[])?)
}
