//! Neural-network building blocks usable from Rust: the module tree (named modules, parameters
//! with owners, the name matcher, forward hooks), the layers the loaded models are made of
//! (`Linear` with its adapter point, `Embedding`, the norms), the attachment points adapters
//! hang on, gradient checkpointing of a layer, where parameters come from (checkpoints or fresh initialisation), the functional
//! ops and PyTorch's default initialisations. Modules written in Lua (stdlib/moontune/nn.lua)
//! answer the same methods and can hold these.

pub mod attach;
pub mod checkpoint;
pub mod compose;
pub mod embedding;
pub mod fourbit;
pub mod functional;
pub mod hooks;
pub mod init;
pub mod linear;
pub mod lua_pattern;
pub mod module;
pub mod names;
pub mod norm;
pub mod weights;
