//! Bindings: the Rust core seen from Lua. Thin userdata newtypes and module tables; the logic
//! lives in the core modules.

pub mod args;
pub mod callbacks;
pub mod checkpoint;
pub mod data;
pub mod dist;
pub mod gguf;
pub mod example;
pub mod json;
pub mod metrics;
pub mod memory;
pub mod models;
pub mod modular;
pub mod module;
pub mod nn;
pub mod optim;
pub mod peft;
pub mod peft_method;
pub mod random;
pub mod runtime;
pub mod sched;
pub mod serialize;
pub mod stdlib;
pub mod tensor;
pub mod tensor_create;
pub mod tensor_methods;
pub mod tokenizer;
pub mod values;

pub use module::seed_everything;
pub use runtime::{load_file, new_lua, route_print};
pub use tensor::LuaTensor;
