//! Transformer models from Hugging Face directories, in Rust over libtorch: the Llama family,
//! GPT-2 and BERT encoders. Each family is a tree of blocks loaded by checkpoint path
//! (`model.layers.0.self_attn.q_proj`), so parameter names are the Hugging Face names.

pub mod bert;
pub mod cache;
pub mod config;
pub mod generate;
pub mod gpt2;
pub mod layers;
pub mod llama;
pub mod mask;
pub mod model;
pub mod rope;
pub mod weights;

pub use model::{ForwardInput, ForwardOutput, Model};
