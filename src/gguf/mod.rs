//! GGUF, llama.cpp's model format, both ways: reading files (metadata, tensor infos, every ggml
//! type de-quantised as ggml does), building Llama-family models and their tokenizers and chat
//! templates from them, and writing fine-tuned models back (f16, q8_0, q4_0, q4_k_m) for
//! llama.cpp, Ollama and LM Studio.

pub mod dequant;
pub mod dequant_torch;
pub mod export;
pub mod llama;
pub mod load;
pub mod quant;
pub mod reader;
pub mod tokenizer;
pub mod types;
pub mod writer;

pub use reader::{Gguf, TensorInfo, Value};
pub use types::GgmlType;
