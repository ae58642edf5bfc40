//! Tensors: dtype and device names as users write them, PyTorch-style printing, creation from
//! flat data, scalar promotion, the libtorch calls tch does not bind (shim), a ledger of live
//! storage, and heap settings for tensor work.
//! Everything else is libtorch through `tch`.

pub mod allocator;
pub mod autograd;
pub mod create;
pub mod cuda_memory;
pub mod cuda_runtime;
pub mod device;
pub mod dtype;
pub mod format;
pub mod guard;
pub mod headroom;
pub mod index;
pub mod ledger;
pub mod scalar;
pub mod shim;

#[cfg(test)]
mod fused_pointwise_tests;

pub use device::{device_name, parse_device, parse_placement, Placement};
pub use dtype::{dtype_name, parse_dtype};
pub use format::format_tensor;
