//! `moontune convert IN OUT`: a Hugging Face model directory to a GGUF file (its tokenizer and
//! chat template included, in the asked file type), or a GGUF file to a Hugging Face directory
//! (config.json, model.safetensors, tokenizer.json and tokenizer_config.json) that transformers
//! loads.

use std::path::Path;

use anyhow::{bail, Context, Result};
use tch::{Device, Kind};

use crate::gguf::export::{save_gguf, FileType};
use crate::gguf::load::gguf_file;
use crate::models::Model;
use crate::tokenizer::Tok;

/// Converts `input` to `output`; returns a line saying what was written.
pub fn convert(input: &Path, output: &Path, file_type: &str, dtype: Option<&str>) -> Result<String> {
    let kind = match dtype {
        Some(d) => Some(crate::tensor::parse_dtype(d).with_context(|| format!("--dtype {d}"))?),
        None => None,
    };
    if let Some(file) = gguf_file(input)? {
        let model = Model::load(&file, kind, Device::Cpu)?;
        let tok = Tok::from_gguf(&file)?;
        model.save(output)?;
        tok.save_pretrained(output)?;
        return Ok(format!("wrote {} ({}, {}) from {}", output.display(), model.architecture, crate::tensor::dtype_name(model.dtype()), file.display()));
    }
    if !input.join("config.json").exists() {
        bail!("{} is neither a GGUF file nor a Hugging Face model directory (no config.json)", input.display());
    }
    if !output.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) {
        bail!("the output of converting a Hugging Face directory is a GGUF file: name it NAME.gguf (got {})", output.display());
    }
    let ft = FileType::parse(file_type)?;
    let model = Model::load(input, Some(kind.unwrap_or(Kind::Float)), Device::Cpu)?;
    let tok = if input.join("tokenizer.json").exists() { Some(Tok::load(input)?) } else { None };
    let name = input.file_name().map(|n| n.to_string_lossy().into_owned());
    save_gguf(&model, output, ft, tok.as_ref(), name.as_deref())?;
    let note = if tok.is_none() { " (no tokenizer.json: the file has no tokenizer)" } else { "" };
    Ok(format!("wrote {} ({file_type}) from {}{note}", output.display(), input.display()))
}
