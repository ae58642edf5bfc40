//! A loaded Llama-family model written as a GGUF for llama.cpp, Ollama and LM Studio: its
//! config as `{arch}.*` metadata, its tokenizer and chat template as `tokenizer.*`, and every
//! parameter under llama.cpp's name (Q/K rows permuted back for `llama` files), stored in the
//! type the chosen file type gives it, as llama.cpp's `llama-quantize` chooses: norms stay F32;
//! `q4_0` and `q4_k_m` keep the output head (or a tied embedding) in Q6_K, and `q4_k_m` also
//! the value projections and down projections of the layers `use_more_bits` picks; a row length
//! a type's block does not divide falls back as llama.cpp falls back (Q4_K to Q5_0, Q6_K to Q8_0,
//! the rest to F16).

use std::path::Path;

use anyhow::{bail, Result};

use super::llama;
use super::reader::Value;
use super::tokenizer;
use super::types::GgmlType;
use super::writer::{write, Entry};
use crate::models::model::Model;
use crate::nn::module::Owner;
use crate::tokenizer::Tok;

/// The file types `save_gguf` writes, with llama.cpp's `general.file_type` codes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FileType {
    F32,
    F16,
    Bf16,
    Q8_0,
    Q4_0,
    Q4KM,
}

impl FileType {
    pub const NAMES: &'static str = "f32, f16, bf16, q8_0, q4_0, q4_k_m";

    pub fn parse(name: &str) -> Result<FileType> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "f32" => FileType::F32,
            "f16" => FileType::F16,
            "bf16" => FileType::Bf16,
            "q8_0" => FileType::Q8_0,
            "q4_0" => FileType::Q4_0,
            "q4_k_m" => FileType::Q4KM,
            other => bail!("GGUF type '{other}' is not supported (supported: {})", FileType::NAMES),
        })
    }

    fn code(self) -> u32 {
        match self {
            FileType::F32 => 0,
            FileType::F16 => 1,
            FileType::Q4_0 => 2,
            FileType::Q8_0 => 7,
            FileType::Q4KM => 15,
            FileType::Bf16 => 32,
        }
    }
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers, and every third between.
fn use_more_bits(layer: i64, layers: i64) -> bool {
    layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2
}

/// The type tensor `name` (llama.cpp's) of row length `row` is stored as.
fn tensor_type(ft: FileType, name: &str, dims: usize, row: i64, layers: i64, tied: bool) -> GgmlType {
    if dims < 2 {
        return GgmlType::F32;
    }
    let is_output = name == "output.weight" || (tied && name == "token_embd.weight");
    let layer = name.strip_prefix("blk.").and_then(|r| r.split('.').next()).and_then(|l| l.parse::<i64>().ok());
    let more_bits = layer.is_some_and(|l| use_more_bits(l, layers)) && (name.contains(".attn_v.") || name.contains(".ffn_down."));
    let wanted = match ft {
        FileType::F32 => GgmlType::F32,
        FileType::F16 => GgmlType::F16,
        FileType::Bf16 => GgmlType::BF16,
        FileType::Q8_0 => GgmlType::Q8_0,
        FileType::Q4_0 if is_output => GgmlType::Q6K,
        FileType::Q4_0 => GgmlType::Q4_0,
        FileType::Q4KM if is_output || more_bits => GgmlType::Q6K,
        FileType::Q4KM => GgmlType::Q4K,
    };
    let fits = |t: GgmlType| row % t.block_size() as i64 == 0;
    let fallback = match wanted {
        GgmlType::Q4K => GgmlType::Q5_0,
        GgmlType::Q6K => GgmlType::Q8_0,
        _ => GgmlType::F16,
    };
    [wanted, fallback, GgmlType::F16].into_iter().find(|t| fits(*t)).unwrap_or(GgmlType::F32)
}

/// Writes `model` (and `tok`, if given: a GGUF without a tokenizer is of little use to
/// llama.cpp) to `path` in file type `ft`.
pub fn save_gguf(model: &Model, path: &Path, ft: FileType, tok: Option<&Tok>, name: Option<&str>) -> Result<()> {
    let arch = llama::gguf_architecture(&model.architecture)?;
    if let Some(p) = model.named_parameters().iter().find(|p| p.owner != Owner::Base) {
        bail!("the model has adapter parameters ('{}'): merge them into the base weights before writing a GGUF", p.name);
    }
    let params = model.base_weights()?;
    let config = &model.config;
    let layers = config.int("num_hidden_layers")?;
    let tied = !params.iter().any(|p| p.name == "lm_head.weight");
    let mut metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::Str(arch.into())),
        ("general.type".into(), Value::Str("model".into())),
        ("general.name".into(), Value::Str(name.unwrap_or("moontune export").into())),
        ("general.file_type".into(), Value::U32(ft.code())),
        ("general.quantization_version".into(), Value::U32(2)),
    ];
    metadata.extend(llama::metadata(arch, config)?);
    if let Some(t) = tok {
        metadata.extend(tokenizer::metadata(t)?);
    }
    let mut entries = Vec::with_capacity(params.len());
    for p in params {
        let Some(gname) = llama::gguf_name(&p.name) else { bail!("parameter '{}' has no llama.cpp name", p.name) };
        let mut t = p.tensor.f_detach()?;
        if arch == "llama" {
            if let Some(heads) = llama::permuted_heads(&p.name, config)? {
                t = llama::permute(&t, heads)?;
            }
        }
        let size = t.size();
        let ty = tensor_type(ft, &gname, size.len(), *size.last().unwrap_or(&1), layers, tied);
        entries.push(Entry { name: gname, tensor: t, ggml_type: ty });
    }
    write(path, &metadata, &entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_k_m_gives_more_bits_where_llama_cpp_does() {
        let picked: Vec<i64> = (0..30).filter(|l| use_more_bits(*l, 30)).collect();
        assert_eq!(picked, vec![0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29]);
        assert_eq!(tensor_type(FileType::Q4KM, "blk.0.attn_v.weight", 2, 512, 30, false), GgmlType::Q6K);
        assert_eq!(tensor_type(FileType::Q4KM, "blk.3.attn_v.weight", 2, 512, 30, false), GgmlType::Q4K);
        assert_eq!(tensor_type(FileType::Q4KM, "blk.3.attn_q.weight", 2, 576, 30, false), GgmlType::Q5_0);
        assert_eq!(tensor_type(FileType::Q4_0, "token_embd.weight", 2, 576, 30, true), GgmlType::Q8_0);
        assert_eq!(tensor_type(FileType::Q8_0, "blk.0.attn_norm.weight", 1, 576, 30, false), GgmlType::F32);
        assert_eq!(tensor_type(FileType::Q8_0, "blk.0.ffn_up.weight", 2, 100, 30, false), GgmlType::F16);
    }
}
