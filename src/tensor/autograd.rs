//! Backward passes with the options PyTorch's `Tensor.backward` has: an explicit gradient for a
//! non-scalar output, and `retain_graph` (tch's `backward` offers neither). Data-parallel
//! parameters (src/dist) are armed first, so that their gradients are averaged across ranks.

use anyhow::{bail, Result};
use tch::Tensor;

/// Accumulates into every leaf's `.grad` the gradient of `t` (weighted by `grad` when given).
pub fn backward(t: &Tensor, grad: Option<&Tensor>, retain_graph: bool) -> Result<()> {
    let root = match grad {
        None if t.numel() != 1 => bail!(
            "grad can be implicitly created only for scalar outputs; this tensor has shape {:?}, pass a gradient of that shape",
            t.size()
        ),
        None => t.shallow_clone(),
        Some(g) if g.size() != t.size() => {
            bail!("gradient has shape {:?} but the tensor has shape {:?}", g.size(), t.size())
        }
        // d/dx sum(t * g) = g · dt/dx: the vector-Jacobian product PyTorch computes.
        Some(g) => t.f_mul(&g.f_detach()?)?.f_sum(None::<tch::Kind>)?,
    };
    // Data-parallel parameters average their gradients across ranks during this backward.
    crate::dist::data_parallel::before_backward(&[&root])?;
    unsafe {
        torch_sys::at_backward(root.as_ptr() as *mut _, retain_graph as libc::c_int, 0);
        let err = torch_sys::get_and_reset_last_err();
        if !err.is_null() {
            let message = std::ffi::CStr::from_ptr(err).to_string_lossy().into_owned();
            libc::free(err as *mut libc::c_void);
            return Err(crate::dist::data_parallel::backward_failed(anyhow::anyhow!(message)));
        }
    }
    Ok(())
}
