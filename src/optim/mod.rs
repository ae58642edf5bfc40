//! Optimizers and learning-rate schedules, matching PyTorch's `torch.optim` update for update.
//! As there (STYLE.md 14), each algorithm is written for three kernels behind one optimizer —
//! single-tensor, foreach (libtorch's `_foreach_*` list ops) and fused (`_fused_adamw_` and
//! friends, one kernel over all parameters) — with the same numbers; state is keyed by
//! parameter identity, and state dicts by parameter name.

pub mod adam;
pub mod clip;
pub mod optimizer;
pub mod param;
pub mod schedule;
pub mod sgd;
pub mod state;

use anyhow::{bail, Result};

pub use optimizer::{zero_grads, Optim, Optimizer};
pub use param::{GroupSpec, Param, ParamGroup};
pub use state::{OptimizerState, ParamKey, ParamState};

/// Which implementation runs the update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// One op per parameter (torch.optim's for-loop path).
    Single,
    /// libtorch's `_foreach_*` list ops, per device and dtype.
    Foreach,
    /// libtorch's fused kernels, per device and dtype.
    Fused,
}

impl Kernel {
    /// From torch.optim's `foreach` and `fused` options; with neither, fused (the fastest,
    /// and the same numbers).
    pub fn choose(foreach: Option<bool>, fused: Option<bool>) -> Result<Kernel> {
        Ok(match (foreach, fused) {
            (Some(true), Some(true)) => bail!("foreach and fused cannot both be true"),
            (_, Some(true)) | (None, None) => Kernel::Fused,
            (Some(true), _) => Kernel::Foreach,
            _ => Kernel::Single,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Single => "single-tensor",
            Kernel::Foreach => "foreach",
            Kernel::Fused => "fused",
        }
    }
}
