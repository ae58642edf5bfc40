//! Loading a model from a GGUF file: the config rebuilt from its metadata, every tensor
//! de-quantised (in parallel, one tensor per task) straight from the mapped file into a tensor
//! of the asked dtype (or, asked to, quantised linear weights kept in their blocks), renamed to
//! transformers' names and un-permuted, then built as any checkpoint is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tch::{Device, Kind, Tensor};

use super::dequant::dequantize;
use super::llama;
use super::reader::{Gguf, TensorInfo};
use super::types::GgmlType;
use crate::models::model::Model;
use crate::nn::weights::Weights;

/// The GGUF file `path` names: the file itself, or the one `.gguf` in a directory that has no
/// config.json. `None` for anything else (a Hugging Face directory).
pub fn gguf_file(path: &Path) -> Result<Option<PathBuf>> {
    if path.is_file() {
        let is_gguf = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
        return Ok(is_gguf.then(|| path.to_path_buf()));
    }
    if !path.is_dir() || path.join("config.json").exists() {
        return Ok(None);
    }
    let entries = std::fs::read_dir(path).with_context(|| format!("cannot list {}", path.display()))?;
    let mut found: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"))).collect();
    found.sort();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => bail!(
            "{} holds several GGUF files ({}); name the one to load",
            path.display(),
            found.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// One tensor of the file as float32 values in a tensor of PyTorch's shape.
pub fn dequantized(g: &Gguf, info: &TensorInfo) -> Result<Tensor> {
    let mut values = vec![0f32; info.elements() as usize];
    dequantize(info.ggml_type, g.data(info), &mut values).with_context(|| format!("tensor '{}'", info.name))?;
    Ok(Tensor::f_from_slice(&values)?.f_reshape(info.shape())?)
}

/// What the file's tensors become: floating-point tensors, and linear weights kept quantised.
type Loaded = (BTreeMap<String, Tensor>, BTreeMap<String, (GgmlType, Tensor)>);

/// Whether tensor `hf` (transformers' name) of `info` stays in its blocks: a quantised linear
/// weight, when the caller keeps them (the embedding is always de-quantised: it is looked up).
fn stays_quantized(keep: bool, hf: &str, info: &TensorInfo) -> bool {
    keep && info.ggml_type.block_size() > 1 && info.dims.len() == 2 && info.dims.iter().all(|d| *d > 0) && hf.ends_with(".weight") && hf != "model.embed_tokens.weight"
}

/// The file's tensors under transformers' names, de-quantised to `kind` (or, with
/// `keep_quantized`, linear weights as their raw blocks), on `device`.
fn tensors(g: &Gguf, config: &crate::models::config::HfConfig, kind: Kind, device: Device, keep_quantized: bool) -> Result<Loaded> {
    let permuted = llama::is_permuted(g);
    let mut todo: Vec<(String, &TensorInfo)> = Vec::new();
    for info in &g.tensors {
        match llama::hf_name(&info.name) {
            Some(hf) => todo.push((hf, info)),
            None if info.name == "rope_freqs.weight" => {}
            None => bail!("tensor '{}' has no place in a {} model", info.name, g.string("general.architecture")?),
        }
    }
    let convert = |(hf, info): &(String, &TensorInfo)| -> Result<(String, Tensor, Option<GgmlType>)> {
        let quantized = stays_quantized(keep_quantized, hf, info);
        let mut t = if quantized {
            let rows = info.dims[1] as i64;
            Tensor::f_from_slice(g.data(info))?.f_reshape([rows, info.nbytes as i64 / rows])?
        } else {
            dequantized(g, info)?
        };
        if permuted {
            if let Some(heads) = llama::permuted_heads(hf, config)? {
                t = llama::unpermute(&t, heads).with_context(|| format!("tensor '{}'", info.name))?;
            }
        }
        if !quantized && kind != Kind::Float {
            t = t.f_to_kind(kind)?;
        }
        Ok((hf.clone(), t.f_to_device(device)?, quantized.then_some(info.ggml_type)))
    };
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(todo.len().max(1));
    let (mut floats, mut blocks) = (BTreeMap::new(), BTreeMap::new());
    std::thread::scope(|scope| -> Result<()> {
        let handles: Vec<_> = (0..workers).map(|w| {
            let todo = &todo;
            let convert = &convert;
            scope.spawn(move || todo.iter().skip(w).step_by(workers).map(convert).collect::<Result<Vec<_>>>())
        }).collect();
        for h in handles {
            for (name, t, ty) in h.join().map_err(|_| anyhow::anyhow!("a de-quantising thread panicked"))?? {
                match ty {
                    Some(ty) => {
                        blocks.insert(name, (ty, t));
                    }
                    None => {
                        floats.insert(name, t);
                    }
                }
            }
        }
        Ok(())
    })?;
    Ok((floats, blocks))
}

/// A model from a GGUF file, its weights de-quantised to `kind` (float32 when not given, as
/// transformers does), or with `keep_quantized` its quantised linear weights kept as they are
/// in the file (frozen, de-quantised at each forward).
pub fn load_model(path: &Path, kind: Option<Kind>, device: Device, keep_quantized: bool) -> Result<Model> {
    let g = Gguf::open(path)?;
    let config = llama::config(&g).with_context(|| format!("reading the model config of {}", path.display()))?;
    // A config the architecture refuses is an error before any tensor is de-quantised.
    crate::models::model::ArchConfig::parse(&config).with_context(|| format!("the model config of {}", path.display()))?;
    let kind = kind.unwrap_or(Kind::Float);
    let (floats, blocks) = tensors(&g, &config, kind, device, keep_quantized).with_context(|| format!("reading {}", path.display()))?;
    let mut weights = Weights::from_tensors(floats, kind, device).with_quantized(blocks);
    Model::from_weights(config, None, &mut weights, device, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_non_empty_quantised_matrices_stay_in_blocks() {
        let info = |dims: Vec<u64>, ggml_type| TensorInfo { name: "blk.0.attn_q.weight".into(), dims, ggml_type, offset: 0, nbytes: 0 };
        let q = "model.layers.0.self_attn.q_proj.weight";
        assert!(stays_quantized(true, q, &info(vec![32, 4], GgmlType::Q8_0)));
        assert!(!stays_quantized(false, q, &info(vec![32, 4], GgmlType::Q8_0)));
        assert!(!stays_quantized(true, q, &info(vec![32, 0], GgmlType::Q8_0)), "a matrix without rows has no bytes per row");
        assert!(!stays_quantized(true, q, &info(vec![32, 4], GgmlType::F16)));
        assert!(!stays_quantized(true, "model.embed_tokens.weight", &info(vec![32, 4], GgmlType::Q8_0)));
    }
}
