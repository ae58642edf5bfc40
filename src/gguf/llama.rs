//! The Llama family in GGUF (llama.cpp's `llama`, `mistral`, `qwen2` and `qwen3`
//! architectures) and in Hugging Face terms, both ways: the config rebuilt from the metadata
//! (as transformers' `load_gguf_checkpoint` does), tensor names mapped between llama.cpp's
//! (`blk.3.attn_q.weight`) and transformers' (`model.layers.3.self_attn.q_proj.weight`), and the
//! Q/K row permutation llama.cpp's converter applies to `llama` files, undone on reading and
//! redone on writing.

use anyhow::{bail, Context, Result};
use serde_json::{json, Map};
use tch::Tensor;

use super::reader::{Gguf, Value};
use crate::models::config::HfConfig;
use crate::models::rope::{RopeConfig, RopeScaling};

/// The GGUF architectures read, with the Hugging Face class each becomes.
pub const ARCHITECTURES: [(&str, &str); 4] = [
    ("llama", "LlamaForCausalLM"),
    ("mistral", "MistralForCausalLM"),
    ("qwen2", "Qwen2ForCausalLM"),
    ("qwen3", "Qwen3ForCausalLM"),
];

/// Per-layer tensors: llama.cpp's name after `blk.N.`, transformers' after `model.layers.N.`.
const LAYER_NAMES: [(&str, &str); 11] = [
    ("attn_norm", "input_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("attn_q_norm", "self_attn.q_norm"),
    ("attn_k_norm", "self_attn.k_norm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

const MODEL_NAMES: [(&str, &str); 3] = [("token_embd", "model.embed_tokens"), ("output_norm", "model.norm"), ("output", "lm_head")];

/// transformers' name of a llama.cpp tensor (`None` for tensors transformers has no place for,
/// such as `rope_freqs`).
pub fn hf_name(gguf: &str) -> Option<String> {
    map_name(gguf, true)
}

/// llama.cpp's name of a transformers tensor.
pub fn gguf_name(hf: &str) -> Option<String> {
    map_name(hf, false)
}

/// `name` through the tables: llama.cpp's to transformers' (`to_hf`) or back.
fn map_name(name: &str, to_hf: bool) -> Option<String> {
    let (layers_from, layers_to) = if to_hf { ("blk.", "model.layers.") } else { ("model.layers.", "blk.") };
    let side = |&(g, h): &(&'static str, &'static str)| if to_hf { (g, h) } else { (h, g) };
    let (stem, suffix) = name.rsplit_once('.')?;
    if let Some(rest) = stem.strip_prefix(layers_from) {
        let (layer, part) = rest.split_once('.')?;
        layer.parse::<u32>().ok()?;
        let (_, to) = LAYER_NAMES.iter().map(side).find(|(from, _)| *from == part)?;
        return Some(format!("{layers_to}{layer}.{to}.{suffix}"));
    }
    let (_, to) = MODEL_NAMES.iter().map(side).find(|(from, _)| *from == stem)?;
    Some(format!("{to}.{suffix}"))
}

/// The Hugging Face class of a GGUF architecture (`general.name` containing "mistral" makes a
/// `llama` file Mistral, as transformers decides).
pub fn hf_architecture(g: &Gguf) -> Result<&'static str> {
    let arch = g.string("general.architecture")?;
    let name = g.get("general.name").and_then(Value::as_str).unwrap_or("");
    if arch == "llama" && name.to_lowercase().contains("mistral") {
        return Ok("MistralForCausalLM");
    }
    match ARCHITECTURES.iter().find(|(a, _)| *a == arch) {
        Some((_, hf)) => Ok(hf),
        None => bail!(
            "GGUF architecture '{arch}' is not supported (supported: {})",
            ARCHITECTURES.iter().map(|(a, _)| *a).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Whether llama.cpp permuted this file's Q and K rows (its converter does so for `llama`).
pub fn is_permuted(g: &Gguf) -> bool {
    g.get("general.architecture").and_then(Value::as_str) == Some("llama")
}

fn int(g: &Gguf, key: &str) -> Result<Option<i64>> {
    match g.get(key) {
        None => Ok(None),
        Some(v) => v.as_i64().map(Some).with_context(|| format!("metadata '{key}' must be an integer, got {v:?}")),
    }
}

fn float(g: &Gguf, key: &str) -> Result<Option<f64>> {
    match g.get(key) {
        None => Ok(None),
        Some(v) => v.as_f64().map(Some).with_context(|| format!("metadata '{key}' must be a number, got {v:?}")),
    }
}

/// The config.json transformers would build from this file's metadata.
pub fn config(g: &Gguf) -> Result<HfConfig> {
    let class = hf_architecture(g)?;
    let arch = g.string("general.architecture")?;
    let key = |k: &str| format!("{arch}.{k}");
    // Sizes must be positive (the architecture checks their upper bounds).
    let need = |k: &str| -> Result<i64> {
        let v = int(g, &key(k))?.with_context(|| format!("the file lacks metadata '{}'", key(k)))?;
        if v < 1 {
            bail!("metadata '{}' must be a positive integer, got {v}", key(k));
        }
        Ok(v)
    };
    let mut c = Map::new();
    c.insert("architectures".into(), json!([class]));
    c.insert("model_type".into(), json!(class.trim_end_matches("ForCausalLM").to_lowercase()));
    c.insert("num_hidden_layers".into(), json!(need("block_count")?));
    let hidden = need("embedding_length")?;
    c.insert("hidden_size".into(), json!(hidden));
    c.insert("intermediate_size".into(), json!(need("feed_forward_length")?));
    let heads = need("attention.head_count")?;
    c.insert("num_attention_heads".into(), json!(heads));
    let kv_heads = match int(g, &key("attention.head_count_kv"))? {
        Some(_) => need("attention.head_count_kv")?,
        None => heads,
    };
    c.insert("num_key_value_heads".into(), json!(kv_heads));
    // The head width: attention.key_length where written (Qwen3), else rope.dimension_count for
    // llama and mistral (as transformers maps it), else the hidden size over the heads.
    let head_dim = match (int(g, &key("attention.key_length"))?, int(g, &key("rope.dimension_count"))?) {
        (Some(k), _) => Some(k),
        (None, Some(r)) if matches!(arch, "llama" | "mistral") => Some(r),
        _ => None,
    };
    if let Some(d) = head_dim {
        c.insert("head_dim".into(), json!(d));
    }
    if let Some(ctx) = int(g, &key("context_length"))? {
        c.insert("max_position_embeddings".into(), json!(ctx));
    }
    c.insert("rope_theta".into(), json!(float(g, &key("rope.freq_base"))?.unwrap_or(10000.0)));
    if let Some(scaling) = g.get(&key("rope.scaling.type")).and_then(Value::as_str).filter(|s| *s != "none") {
        bail!("rope scaling '{scaling}' ({}) is not supported", key("rope.scaling.type"));
    }
    if let Some(eps) = float(g, &key("attention.layer_norm_rms_epsilon"))? {
        c.insert("rms_norm_eps".into(), json!(eps));
    }
    if let Some(window) = int(g, &key("attention.sliding_window"))? {
        c.insert("sliding_window".into(), json!(window));
        if arch != "mistral" && arch != "llama" {
            c.insert("use_sliding_window".into(), json!(true));
        }
    }
    let vocab = match int(g, &key("vocab_size"))? {
        Some(v) => v,
        None => match g.get("tokenizer.ggml.tokens").and_then(Value::as_array) {
            Some(tokens) => tokens.len() as i64,
            None => g.tensor("token_embd.weight").and_then(|t| t.dims.get(1)).map(|d| *d as i64).context("the file states no vocabulary size")?,
        },
    };
    c.insert("vocab_size".into(), json!(vocab));
    c.insert("tie_word_embeddings".into(), json!(g.tensor("output.weight").is_none()));
    for (gg, hf) in [("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id"), ("padding_token_id", "pad_token_id")] {
        if let Some(id) = int(g, &format!("tokenizer.ggml.{gg}"))? {
            c.insert(hf.into(), json!(id));
        }
    }
    if hidden % heads != 0 && head_dim.is_none() {
        bail!("{} ({hidden}) is not divisible by {} ({heads})", key("embedding_length"), key("attention.head_count"));
    }
    Ok(HfConfig { json: c })
}

/// What the metadata says about the model, for writing: the inverse of `config`.
pub fn metadata(arch: &str, config: &HfConfig) -> Result<Vec<(String, Value)>> {
    let key = |k: &str| format!("{arch}.{k}");
    let heads = config.int("num_attention_heads")?;
    let hidden = config.int("hidden_size")?;
    let head_dim = config.int_or("head_dim", hidden / heads)?;
    let mut m = vec![
        (key("block_count"), Value::U32(config.int("num_hidden_layers")? as u32)),
        (key("context_length"), Value::U32(config.int_or("max_position_embeddings", 2048)? as u32)),
        (key("embedding_length"), Value::U32(hidden as u32)),
        (key("feed_forward_length"), Value::U32(config.int("intermediate_size")? as u32)),
        (key("attention.head_count"), Value::U32(heads as u32)),
        (key("attention.head_count_kv"), Value::U32(config.int_or("num_key_value_heads", heads)? as u32)),
        (key("rope.freq_base"), Value::F32(rope_theta(config)? as f32)),
        (key("attention.layer_norm_rms_epsilon"), Value::F32(config.float_or("rms_norm_eps", 1e-6)? as f32)),
        (key("vocab_size"), Value::U32(config.int("vocab_size")? as u32)),
        (key("rope.dimension_count"), Value::U32(head_dim as u32)),
    ];
    if head_dim * heads != hidden || arch == "qwen3" {
        m.push((key("attention.key_length"), Value::U32(head_dim as u32)));
        m.push((key("attention.value_length"), Value::U32(head_dim as u32)));
    }
    if let Some(w) = config.opt_int("sliding_window")?.filter(|_| arch == "mistral" || config.bool_or("use_sliding_window", false).unwrap_or(false)) {
        m.push((key("attention.sliding_window"), Value::U32(w as u32)));
    }
    Ok(m)
}

/// `rope_theta`, read as the model reads it (`RopeConfig::parse`); a scaled rope has no GGUF
/// form written here yet.
fn rope_theta(config: &HfConfig) -> Result<f64> {
    let rope = RopeConfig::parse(config)?;
    if !matches!(rope.scaling, RopeScaling::Default) {
        bail!("rope scaling ({:?}) cannot be written to GGUF yet", rope.scaling);
    }
    Ok(rope.theta)
}

/// The GGUF architecture a Hugging Face class is written as.
pub fn gguf_architecture(class: &str) -> Result<&'static str> {
    match ARCHITECTURES.iter().find(|(_, hf)| *hf == class) {
        Some((a, _)) => Ok(if *a == "mistral" { "llama" } else { a }),
        None => bail!("only the Llama family ({}) can be written as GGUF, not {class}", ARCHITECTURES.iter().map(|(_, h)| *h).collect::<Vec<_>>().join(", ")),
    }
}

/// The heads whose rows tensor `hf` (a q or k projection) interleaves, if it is one.
pub fn permuted_heads(hf: &str, config: &HfConfig) -> Result<Option<i64>> {
    let heads = config.int("num_attention_heads")?;
    Ok(if hf.contains(".self_attn.q_proj.") {
        Some(heads)
    } else if hf.contains(".self_attn.k_proj.") {
        Some(config.int_or("num_key_value_heads", heads)?)
    } else {
        None
    })
}

/// Undoes llama.cpp's permutation of a q or k projection's rows (weight or bias): within each
/// head, rows come as (pair, half) and go back to (half, pair), transformers' rotate_half layout.
pub fn unpermute(t: &Tensor, heads: i64) -> Result<Tensor> {
    reorder(t, heads, true)
}

/// llama.cpp's permutation, for writing a `llama` file.
pub fn permute(t: &Tensor, heads: i64) -> Result<Tensor> {
    reorder(t, heads, false)
}

fn reorder(t: &Tensor, heads: i64, undo: bool) -> Result<Tensor> {
    let shape = t.size();
    let rows = shape[0];
    if rows % (2 * heads) != 0 {
        bail!("a q/k projection of {rows} rows cannot be split into {heads} heads of rotary pairs");
    }
    let half = rows / heads / 2;
    let rest: Vec<i64> = shape[1..].to_vec();
    let split = |a: i64, b: i64| [vec![heads, a, b], rest.clone()].concat();
    let inner = if undo { split(half, 2) } else { split(2, half) };
    Ok(t.f_reshape(&inner)?.f_transpose(1, 2)?.f_contiguous()?.f_reshape(&shape)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways() {
        for (g, h) in [("blk.3.attn_q.weight", "model.layers.3.self_attn.q_proj.weight"), ("blk.0.attn_k_norm.weight", "model.layers.0.self_attn.k_norm.weight"),
                       ("token_embd.weight", "model.embed_tokens.weight"), ("output.weight", "lm_head.weight"), ("blk.12.ffn_down.bias", "model.layers.12.mlp.down_proj.bias")] {
            assert_eq!(hf_name(g).as_deref(), Some(h));
            assert_eq!(gguf_name(h).as_deref(), Some(g));
        }
        assert_eq!(hf_name("rope_freqs.weight"), None);
        assert_eq!(hf_name("blk.x.attn_q.weight"), None);
        assert_eq!(gguf_name("model.layers.0.self_attn.rotary_emb.inv_freq"), None);
    }

    /// A GGUF holding only `metadata`.
    fn file_with(metadata: &[(&str, Value)]) -> Gguf {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        let meta: Vec<(String, Value)> = metadata.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        crate::gguf::writer::write(&path, &meta, &[]).unwrap();
        Gguf::from_bytes(std::fs::read(&path).unwrap()).unwrap()
    }

    #[test]
    fn sizes_that_are_not_positive_are_refused_before_any_arithmetic() {
        for (key, value) in [("llama.attention.head_count", 0), ("llama.attention.head_count_kv", 0), ("llama.embedding_length", -4), ("llama.block_count", 0)] {
            let mut meta = vec![
                ("general.architecture", Value::Str("llama".into())),
                ("llama.block_count", Value::U32(1)),
                ("llama.embedding_length", Value::U32(8)),
                ("llama.feed_forward_length", Value::U32(8)),
                ("llama.attention.head_count", Value::U32(2)),
            ];
            meta.retain(|(k, _)| *k != key);
            meta.push((key, Value::I32(value)));
            let message = format!("{:#}", config(&file_with(&meta)).err().expect("refused"));
            assert!(message.contains(key) && message.contains("positive"), "{message}");
        }
    }

    #[test]
    fn a_scaled_rope_is_refused_when_writing_and_theta_is_read_as_the_model_reads_it() {
        let cfg = |json: serde_json::Value| HfConfig::from_value(json).unwrap();
        let llama3 = serde_json::json!({ "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                         "original_max_position_embeddings": 8192, "rope_type": "llama3" });
        let message = format!("{:#}", rope_theta(&cfg(serde_json::json!({ "rope_parameters": llama3 }))).unwrap_err());
        assert!(message.contains("Llama3"), "{message}");
        assert_eq!(rope_theta(&cfg(serde_json::json!({ "rope_parameters": { "rope_theta": 1e6, "rope_type": "default" } }))).unwrap(), 1e6);
        assert_eq!(rope_theta(&cfg(serde_json::json!({ "rope_theta": 5e5 }))).unwrap(), 5e5);
    }
}
