//! Writing and reading state on disk: atomic file writes and safetensors files of named tensors.
//! Whole-run checkpoints (optimizer, RNG, data cursor) build on these.

pub mod atomic;
pub mod safetensors_io;

pub use atomic::write_atomic;
pub use safetensors_io::{load_safetensors, save_safetensors};
