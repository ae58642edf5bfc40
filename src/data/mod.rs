//! Datasets for training and evaluation: sources (files in the common formats, Lua lists), lazy
//! deterministic steps over them, iterators whose position can be saved, and the formatting steps
//! that turn text into training rows (templates, tokenisation with response-only labels, packing,
//! batching with dynamic padding).

pub mod batch;
pub mod clean;
pub mod dataset;
pub mod inspect;
pub mod iter;
pub mod minhash;
pub mod pack;
pub mod parquet;
pub mod pii;
pub mod records;
pub mod rng;
pub mod schema;
pub mod shard;
pub mod source;
pub mod split;
pub mod stream;
pub mod tally;
pub mod template;
pub mod tokenize;
pub mod value;
