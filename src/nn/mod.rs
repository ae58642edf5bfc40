//! Neural-network building blocks usable from Rust: the functional ops with the checks that
//! turn a mistake into a clear error, and PyTorch's default initialisations. The module tree
//! that recipes use (`mt.nn.linear`, modules written in Lua) is stdlib/moontune/nn.lua over these.

pub mod functional;
pub mod init;
