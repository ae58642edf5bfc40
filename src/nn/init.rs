//! PyTorch's default initialisations (`torch.nn.init`), in place and without gradient tracking.

use anyhow::{bail, Result};
use tch::Tensor;

/// `fan_in` of a weight: the product of all dims but the first (PyTorch's `_calculate_fan_in_and_fan_out`).
pub fn fan_in(t: &Tensor) -> Result<i64> {
    let size = t.size();
    if size.len() < 2 {
        bail!("fan_in needs a tensor with at least 2 dims, got shape {size:?}");
    }
    Ok(size[1..].iter().product())
}

/// `kaiming_uniform_(t, a)` with leaky-ReLU gain: U(-b, b), b = gain·√(3 / fan_in),
/// gain = √(2 / (1 + a²)). With a = √5 (nn.Linear's choice) b is 1/√fan_in.
pub fn kaiming_uniform_(t: &mut Tensor, a: f64) -> Result<()> {
    let gain = (2.0 / (1.0 + a * a)).sqrt();
    let bound = gain * (3.0 / fan_in(t)? as f64).sqrt();
    let _guard = tch::no_grad_guard();
    let _ = t.f_uniform_(-bound, bound)?;
    Ok(())
}

/// U(-1/√fan_in, 1/√fan_in), nn.Linear's bias initialisation.
pub fn uniform_fan_in_(t: &mut Tensor, fan_in: i64) -> Result<()> {
    let bound = if fan_in > 0 { 1.0 / (fan_in as f64).sqrt() } else { 0.0 };
    let _guard = tch::no_grad_guard();
    let _ = t.f_uniform_(-bound, bound)?;
    Ok(())
}
