//! Tensors: dtype and device names as users write them, PyTorch-style printing, and creation
//! from flat data. Everything else is libtorch through `tch`.

pub mod autograd;
pub mod create;
pub mod cuda_memory;
pub mod device;
pub mod dtype;
pub mod format;

pub use device::{device_name, parse_device};
pub use dtype::{dtype_name, parse_dtype};
pub use format::format_tensor;
