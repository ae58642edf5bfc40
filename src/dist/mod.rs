//! Data-parallel training across processes and machines on PyTorch's distributed engine, c10d:
//! `c10d` binds its store, Gloo process group, collectives and Reducer; `nccl` loads the NCCL
//! backend for CUDA tensors where the build has it; `world` is this
//! process's rank among the others and the collectives a recipe calls; `data_parallel` averages
//! gradients during backward as DDP does; `launch` starts the ranks (`moontune launch`); `sync`
//! keeps the ranks' run loops in step (commands, metrics, the run directory).

pub mod c10d;
pub mod data_parallel;
pub mod launch;
pub mod nccl;
pub mod sync;
pub mod world;
