//! A loaded model of any supported architecture: loading (`load`, `new`), the forward pass with
//! an optional causal-LM loss, parameters by Hugging Face name, and saving a directory that
//! transformers loads.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tch::{Device, Kind, Tensor};

use super::bert::{Bert, BertConfig};
use super::cache::KvCache;
use super::config::HfConfig;
use super::gpt2::{Gpt2, Gpt2Config};
use super::llama::{Llama, LlamaConfig, Variant};
use super::weights::Weights;
use crate::checkpoint::{save_safetensors, write_atomic};

pub enum Family {
    Llama(Llama),
    Gpt2(Gpt2),
    Bert(Bert),
}

pub struct Model {
    pub family: Family,
    pub architecture: String,
    /// The config.json this model was built from (written back by `save`).
    pub config: HfConfig,
    /// Parameters by Hugging Face name, in checkpoint order.
    pub params: Vec<(String, Tensor)>,
    pub training: bool,
}

/// What `forward` takes; ids are (batch, seq) int64.
#[derive(Default)]
pub struct ForwardInput {
    pub input_ids: Option<Tensor>,
    pub attention_mask: Option<Tensor>,
    pub position_ids: Option<Tensor>,
    pub token_type_ids: Option<Tensor>,
    pub labels: Option<Tensor>,
    /// Also return a causal LM's final hidden states (after the last norm).
    pub output_hidden_states: bool,
}

#[derive(Default)]
pub struct ForwardOutput {
    pub logits: Option<Tensor>,
    pub loss: Option<Tensor>,
    pub last_hidden_state: Option<Tensor>,
    pub pooler_output: Option<Tensor>,
}

fn build(config: HfConfig, weights: &mut Weights, device: Device) -> Result<(Family, String)> {
    let arch = config.architecture()?;
    let family = match arch.as_str() {
        "LlamaForCausalLM" => Family::Llama(Llama::load(weights, LlamaConfig::parse(&config, Variant::Llama)?, device)?),
        "MistralForCausalLM" => Family::Llama(Llama::load(weights, LlamaConfig::parse(&config, Variant::Mistral)?, device)?),
        "Qwen2ForCausalLM" => Family::Llama(Llama::load(weights, LlamaConfig::parse(&config, Variant::Qwen2)?, device)?),
        "Qwen3ForCausalLM" => Family::Llama(Llama::load(weights, LlamaConfig::parse(&config, Variant::Qwen3)?, device)?),
        "GPT2LMHeadModel" => Family::Gpt2(Gpt2::load(weights, Gpt2Config::parse(&config)?)?),
        "BertModel" => Family::Bert(Bert::load(weights, BertConfig::parse(&config)?)?),
        other => bail!("architecture '{other}' is not supported (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, GPT2LMHeadModel, BertModel)"),
    };
    Ok((family, arch))
}

impl Model {
    /// Loads a Hugging Face model directory; `kind` converts floating-point weights.
    pub fn load(dir: &Path, kind: Option<Kind>, device: Device) -> Result<Model> {
        let config = HfConfig::read(dir)?;
        let mut weights = Weights::load(dir, kind, device)?;
        let (family, architecture) = build(config.clone(), &mut weights, device).with_context(|| format!("loading {}", dir.display()))?;
        let model = Model { family, architecture, config, params: std::mem::take(&mut weights.params), training: false };
        let extra = weights.untaken(|n| model.ignorable(n));
        if !extra.is_empty() {
            bail!("{}: the checkpoint has tensors this architecture does not use: {}", dir.display(), extra.join(", "));
        }
        Ok(model)
    }

    /// A randomly initialised model of `arch` with the given config (transformers' defaults
    /// for missing keys where the architecture has them).
    pub fn new(arch: &str, mut config: serde_json::Map<String, Value>, kind: Kind, device: Device) -> Result<Model> {
        config.insert("architectures".into(), Value::Array(vec![Value::String(arch.to_string())]));
        let std = config.get("initializer_range").and_then(|v| v.as_f64()).unwrap_or(0.02);
        let config = HfConfig { json: config };
        let mut weights = Weights::fresh(kind, device, std);
        let (family, architecture) = build(config.clone(), &mut weights, device)?;
        Ok(Model { family, architecture, config, params: weights.params, training: true })
    }

    fn ignorable(&self, name: &str) -> bool {
        match &self.family {
            Family::Llama(m) => m.ignorable(name),
            Family::Gpt2(m) => m.ignorable(name),
            Family::Bert(m) => m.ignorable(name),
        }
    }

    pub fn is_causal_lm(&self) -> bool {
        !matches!(self.family, Family::Bert(_))
    }

    pub fn dtype(&self) -> Kind {
        self.params.first().map(|(_, t)| t.kind()).unwrap_or(Kind::Float)
    }

    pub fn device(&self) -> Device {
        self.params.first().map(|(_, t)| t.device()).unwrap_or(Device::Cpu)
    }

    pub fn new_cache(&self) -> Option<KvCache> {
        match &self.family {
            Family::Llama(m) => Some(m.new_cache()),
            Family::Gpt2(m) => Some(m.new_cache()),
            Family::Bert(_) => None,
        }
    }

    /// A causal LM's final hidden states (B, T, hidden), continuing from `cache` if given.
    pub fn causal_hidden(&self, ids: &Tensor, padding: Option<&Tensor>, positions: Option<&Tensor>, cache: Option<&mut KvCache>) -> Result<Tensor> {
        match &self.family {
            Family::Llama(m) => m.hidden(ids, padding, positions, cache, self.training),
            Family::Gpt2(m) => m.hidden(ids, padding, positions, cache, self.training),
            Family::Bert(_) => bail!("{} is an encoder: it has no next-token logits", self.architecture),
        }
    }

    /// Logits (B, T, vocab) from a causal LM's final hidden states.
    pub fn lm_head(&self, hidden: &Tensor) -> Result<Tensor> {
        match &self.family {
            Family::Llama(m) => m.logits(hidden),
            Family::Gpt2(m) => m.logits(hidden),
            Family::Bert(_) => bail!("{} is an encoder: it has no language-modelling head", self.architecture),
        }
    }

    /// Next-token logits (B, T, vocab) of a causal LM, continuing from `cache` if given.
    pub fn causal_logits(&self, ids: &Tensor, padding: Option<&Tensor>, positions: Option<&Tensor>, cache: Option<&mut KvCache>) -> Result<Tensor> {
        self.lm_head(&self.causal_hidden(ids, padding, positions, cache)?)
    }

    pub fn forward(&self, input: &ForwardInput, cache: Option<&mut KvCache>) -> Result<ForwardOutput> {
        let Some(ids) = &input.input_ids else { bail!("forward needs input_ids") };
        if !matches!(ids.kind(), Kind::Int64 | Kind::Int) {
            bail!("input_ids must be an integer tensor, got {}", crate::tensor::dtype_name(ids.kind()));
        }
        if let Family::Bert(m) = &self.family {
            if input.labels.is_some() {
                bail!("{} has no language-modelling head: labels are not accepted", self.architecture);
            }
            let (hidden, pooled) = m.forward(ids, input.attention_mask.as_ref(), input.token_type_ids.as_ref(), input.position_ids.as_ref(), self.training)?;
            return Ok(ForwardOutput { last_hidden_state: Some(hidden), pooler_output: pooled, ..Default::default() });
        }
        if input.token_type_ids.is_some() {
            bail!("{} takes no token_type_ids", self.architecture);
        }
        let hidden = self.causal_hidden(ids, input.attention_mask.as_ref(), input.position_ids.as_ref(), cache)?;
        let logits = self.lm_head(&hidden)?;
        let loss = match &input.labels {
            Some(labels) => Some(causal_lm_loss(&logits, labels)?),
            None => None,
        };
        let last_hidden_state = input.output_hidden_states.then_some(hidden);
        Ok(ForwardOutput { logits: Some(logits), loss, last_hidden_state, ..Default::default() })
    }

    /// Writes config.json and model.safetensors (tied weights stored once), atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let tensors: BTreeMap<String, Tensor> = self.params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
        let metadata = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
        save_safetensors(&dir.join("model.safetensors"), &tensors, Some(metadata))?;
        let mut config = self.config.json.clone();
        config.insert("torch_dtype".into(), Value::String(crate::tensor::dtype_name(self.dtype())));
        write_atomic(&dir.join("config.json"), serde_json::to_string_pretty(&Value::Object(config))?.as_bytes())
    }
}

/// transformers' causal-LM loss: logits at t predict labels at t+1; -100 is ignored; float32.
pub fn causal_lm_loss(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let (lsize, ysize) = (logits.size(), labels.size());
    if lsize.len() != 3 || ysize != lsize[..2] {
        bail!("labels have shape {ysize:?}, expected {:?} (batch, seq)", &lsize[..lsize.len().min(2)]);
    }
    if labels.kind() != Kind::Int64 {
        bail!("labels must be int64, got {}", crate::tensor::dtype_name(labels.kind()));
    }
    let t = lsize[1];
    let vocab = lsize[2];
    let shifted_logits = logits.f_narrow(1, 0, t - 1)?.f_to_kind(Kind::Float)?.f_reshape([-1, vocab])?;
    let shifted_labels = labels.f_narrow(1, 1, t - 1)?.f_reshape([-1])?;
    Ok(shifted_logits.f_cross_entropy_loss(&shifted_labels, None::<Tensor>, tch::Reduction::Mean, -100, 0.0)?)
}
