//! Tensors on disk, below everything that saves state (models, optimizers, checkpoints): atomic
//! file writes and safetensors files of named tensors.

pub mod atomic;
pub mod plain_words;
pub mod safetensors;

pub use atomic::{replace_atomic, write_atomic};
pub use plain_words::plain_words;
pub use safetensors::{load_safetensors, save_safetensors};
