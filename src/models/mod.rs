//! Transformer models from Hugging Face directories, in Rust over libtorch: the Llama family,
//! GPT-2 and BERT encoders. Each family is a module tree (src/nn/module.rs) of blocks loaded by
//! checkpoint path (`model.layers.0.self_attn.q_proj`), each with its own `forward`, so that
//! module and parameter names are the Hugging Face names.

pub mod bert;
pub mod cache;
pub mod classify;
pub mod config;
pub mod generate;
pub mod gpt2;
pub mod input;
pub mod llama;
pub mod loss;
pub mod mask;
pub mod model;
pub mod rope;

pub use model::{ForwardInput, ForwardOutput, Model};
