//! Checkpoints that resume a run exactly: the directory store (atomic writes, `latest`, pruning),
//! which checkpoints to keep (the last few, the best by a metric) and when to stop early, and the
//! recipe's `math.random` generator, whose state they save. What goes into a checkpoint is
//! gathered from the recipe's `state` by stdlib/moontune/checkpoint.lua.

pub mod policy;
pub mod store;
pub mod xoshiro;
