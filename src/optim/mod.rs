//! Optimizers and learning-rate schedules, written to match PyTorch's single-tensor
//! implementations (`torch/optim/sgd.py`, `adam.py`) update for update.

pub mod adam;
pub mod clip;
pub mod schedule;
pub mod sgd;
pub mod state;

use anyhow::Result;
use tch::Tensor;

pub use state::{OptimizerState, ParamState};

/// Parameters that share a learning rate and weight decay.
pub struct ParamGroup {
    pub params: Vec<Tensor>,
    pub lr: f64,
    pub weight_decay: f64,
}

/// What every optimizer offers the runtime and the bindings.
pub trait Optimizer {
    /// Applies one update to every parameter that has a gradient.
    fn step(&mut self) -> Result<()>;
    fn groups(&self) -> &[ParamGroup];
    fn groups_mut(&mut self) -> &mut [ParamGroup];
    /// The per-parameter state (moments, momentum buffers, step counts) and group settings.
    fn state_dict(&self) -> Result<OptimizerState>;
    fn load_state_dict(&mut self, state: &OptimizerState) -> Result<()>;

    /// Zeroes every gradient (PyTorch's `zero_grad(set_to_none=False)`).
    fn zero_grad(&mut self) {
        for group in self.groups_mut() {
            for p in group.params.iter_mut() {
                p.zero_grad();
            }
        }
    }
}

/// Every parameter of every group, in order (the numbering used by state dicts).
pub(crate) fn all_params(groups: &[ParamGroup]) -> impl Iterator<Item = &Tensor> {
    groups.iter().flat_map(|g| g.params.iter())
}

/// Calls `update(index, group, param, grad)` for every parameter that has a gradient, without
/// gradient tracking; `index` numbers parameters over all groups in order.
pub(crate) fn for_each_grad(
    groups: &mut [ParamGroup],
    mut update: impl FnMut(usize, (f64, f64), &mut Tensor, Tensor) -> Result<()>,
) -> Result<()> {
    let _guard = tch::no_grad_guard();
    let mut index = 0;
    for group in groups.iter_mut() {
        let settings = (group.lr, group.weight_decay);
        for p in group.params.iter_mut() {
            let grad = p.f_grad()?;
            if grad.defined() {
                update(index, settings, p, grad)?;
            }
            index += 1;
        }
    }
    Ok(())
}
