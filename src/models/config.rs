//! A Hugging Face `config.json` read as JSON with typed accessors, so that each architecture
//! takes the keys it understands and rejects the values it does not support.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};

/// The most layers (or heads) a config may ask for: real models have at most a few hundred.
pub const MAX_LAYERS: i64 = 4096;
/// The largest width, vocabulary or context length a config may ask for.
pub const MAX_WIDTH: i64 = 1 << 24;

#[derive(Clone, Debug)]
pub struct HfConfig {
    pub json: Map<String, Value>,
}

impl HfConfig {
    pub fn read(dir: &Path) -> Result<HfConfig> {
        HfConfig::read_file(&dir.join("config.json"))
    }

    /// `generation_config.json` of a model directory (transformers' generation defaults), if any.
    pub fn read_generation(dir: &Path) -> Result<Option<HfConfig>> {
        let path = dir.join("generation_config.json");
        if path.exists() { HfConfig::read_file(&path).map(Some) } else { Ok(None) }
    }

    fn read_file(path: &Path) -> Result<HfConfig> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let value: Value = serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
        HfConfig::from_value(value).with_context(|| format!("in {}", path.display()))
    }

    pub fn from_value(value: Value) -> Result<HfConfig> {
        match value {
            Value::Object(json) => Ok(HfConfig { json }),
            _ => bail!("a config must be a JSON object"),
        }
    }

    /// The architecture name: `architectures[0]`, else from `model_type`.
    pub fn architecture(&self) -> Result<String> {
        if let Some(a) = self.json.get("architectures").and_then(|v| v.as_array()).and_then(|a| a.first()).and_then(|v| v.as_str()) {
            return Ok(a.to_string());
        }
        let from_type = match self.json.get("model_type").and_then(|v| v.as_str()) {
            Some("llama") => "LlamaForCausalLM",
            Some("mistral") => "MistralForCausalLM",
            Some("qwen2") => "Qwen2ForCausalLM",
            Some("qwen3") => "Qwen3ForCausalLM",
            Some("gpt2") => "GPT2LMHeadModel",
            Some("bert") => "BertModel",
            _ => bail!("config names no architecture (no 'architectures' and no known 'model_type')"),
        };
        Ok(from_type.to_string())
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.json.get(key).filter(|v| !v.is_null())
    }

    pub fn int(&self, key: &str) -> Result<i64> {
        match self.get(key) {
            // An integral float (`2.0`, or a Lua number such as 2^40) counts as the integer.
            Some(v) => v
                .as_i64()
                .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| f as i64))
                .with_context(|| format!("config key '{key}' must be an integer, got {v}")),
            None => bail!("config lacks '{key}'"),
        }
    }

    pub fn int_or(&self, key: &str, default: i64) -> Result<i64> {
        if self.get(key).is_some() { self.int(key) } else { Ok(default) }
    }

    pub fn opt_int(&self, key: &str) -> Result<Option<i64>> {
        if self.get(key).is_some() { self.int(key).map(Some) } else { Ok(None) }
    }

    /// A size (a dimension, a count of layers or heads): an integer from 1 to `max`. Checked
    /// before anything is allocated, so that a config cannot ask for 10¹² layers.
    pub fn size(&self, key: &str, max: i64) -> Result<i64> {
        let v = self.int(key)?;
        if !(1..=max).contains(&v) {
            bail!("config key '{key}' must be an integer from 1 to {max}, got {v}");
        }
        Ok(v)
    }

    /// A token id the model's embedding uses (`pad_token_id`): inside the vocabulary, or
    /// counted from its end when negative, as torch.nn.Embedding's padding_idx.
    pub fn opt_token_id(&self, key: &str, vocab_size: i64) -> Result<Option<i64>> {
        let id = self.opt_int(key)?;
        if let Some(id) = id.filter(|id| !(-vocab_size..vocab_size).contains(id)) {
            bail!("config key '{key}' is {id}, outside the vocabulary of {vocab_size} tokens (vocab_size)");
        }
        Ok(id)
    }

    pub fn size_or(&self, key: &str, default: i64, max: i64) -> Result<i64> {
        if self.get(key).is_some() { self.size(key, max) } else { Ok(default) }
    }

    pub fn opt_size(&self, key: &str, max: i64) -> Result<Option<i64>> {
        if self.get(key).is_some() { self.size(key, max).map(Some) } else { Ok(None) }
    }

    pub fn float_or(&self, key: &str, default: f64) -> Result<f64> {
        match self.get(key) {
            Some(v) => v.as_f64().with_context(|| format!("config key '{key}' must be a number, got {v}")),
            None => Ok(default),
        }
    }

    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            Some(v) => v.as_bool().with_context(|| format!("config key '{key}' must be true or false, got {v}")),
            None => Ok(default),
        }
    }

    pub fn str_or<'a>(&'a self, key: &str, default: &'a str) -> Result<&'a str> {
        match self.get(key) {
            Some(v) => v.as_str().with_context(|| format!("config key '{key}' must be a string, got {v}")),
            None => Ok(default),
        }
    }

    pub fn object(&self, key: &str) -> Option<&Map<String, Value>> {
        self.get(key).and_then(|v| v.as_object())
    }

    /// Fails if `key` is present with a value other than those in `allowed`.
    pub fn require_one_of(&self, key: &str, allowed: &[&str], default: &str) -> Result<()> {
        let v = self.str_or(key, default)?;
        if !allowed.contains(&v) {
            bail!("config key '{key}' = '{v}' is not supported (supported: {})", allowed.join(", "));
        }
        Ok(())
    }
}
