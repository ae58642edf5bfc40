//! A loaded model of any supported architecture: loading (`load`, `new`), the module tree it is
//! (named modules and parameters, through `root`), the forward pass with an optional causal-LM
//! loss, forward hooks, and saving a directory that transformers loads.

use std::cell::RefCell;
use std::path::Path;
use std::rc::{Rc, Weak};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tch::{Device, Kind, Tensor};

use super::bert::{BertConfig, BertModel};
use super::cache::KvCache;
use super::classify::{BertForSequenceClassification, ClassifierConfig, LlamaForSequenceClassification};
use super::config::HfConfig;
use super::gpt2::{Gpt2Config, Gpt2LMHeadModel};
use super::input::Tokens;
use super::loss::{causal_lm_loss, causal_lm_loss_fused};
use super::llama::{LlamaConfig, LlamaForCausalLM, Variant};
use crate::io::{save_safetensors, write_atomic};
use crate::nn::checkpoint::Reach;
use crate::nn::hooks::{Ctx, Hooks};
use crate::nn::module::{self, Module, NamedParam};
use crate::nn::weights::Weights;
use crate::tensor::guard;

pub enum Family {
    Llama(LlamaForCausalLM),
    /// A Llama-family decoder with a sequence-classification head.
    LlamaClassifier(LlamaForSequenceClassification),
    Gpt2(Gpt2LMHeadModel),
    Bert(BertModel),
    /// A BERT encoder with a sequence-classification head.
    BertClassifier(BertForSequenceClassification),
}

pub struct Model {
    pub family: Family,
    pub architecture: String,
    /// The config.json this model was built from (written back by `save`).
    pub config: HfConfig,
    /// Its generation_config.json, if it has one: `generate`'s defaults (written back by `save`).
    pub generation: Option<HfConfig>,
    /// Training mode (dropout on); models load in eval mode, as in transformers.
    pub training: bool,
    pub hooks: Hooks,
    /// The adapters added by name (their configs; their parameters live in the tree).
    pub adapters: crate::peft::Registry,
    /// With gradient checkpointing on: how a layer's recomputation in backward reaches the model.
    checkpointing: Option<Reach>,
}

/// What `forward` takes: token ids (B, T) int64, or `inputs_embeds` (B, T, hidden) instead.
#[derive(Default)]
pub struct ForwardInput {
    pub input_ids: Option<Tensor>,
    pub inputs_embeds: Option<Tensor>,
    pub attention_mask: Option<Tensor>,
    pub position_ids: Option<Tensor>,
    pub token_type_ids: Option<Tensor>,
    pub labels: Option<Tensor>,
    /// Also return a causal LM's final hidden states (after the last norm).
    pub output_hidden_states: bool,
}

impl ForwardInput {
    /// The input with every row repeated `n` times over (all copies of row 0..B, then again):
    /// what a `Parallel` setup runs on, one copy per adapter.
    fn repeated(&self, n: i64) -> Result<ForwardInput> {
        let rep = |t: &Option<Tensor>| -> Result<Option<Tensor>> {
            t.as_ref()
                .map(|t| {
                    let mut times = vec![1i64; t.dim()];
                    if let Some(first) = times.first_mut() {
                        *first = n;
                    }
                    t.f_repeat(&times)
                })
                .transpose()
                .map_err(Into::into)
        };
        Ok(ForwardInput {
            input_ids: rep(&self.input_ids)?,
            inputs_embeds: rep(&self.inputs_embeds)?,
            attention_mask: rep(&self.attention_mask)?,
            position_ids: rep(&self.position_ids)?,
            token_type_ids: rep(&self.token_type_ids)?,
            labels: rep(&self.labels)?,
            output_hidden_states: self.output_hidden_states,
        })
    }

    fn tokens(&self) -> Result<Tokens<'_>> {
        match (&self.input_ids, &self.inputs_embeds) {
            (Some(ids), None) => {
                if !matches!(ids.kind(), Kind::Int64 | Kind::Int) {
                    bail!("input_ids must be an integer tensor, got {}", crate::tensor::dtype_name(ids.kind()));
                }
                Ok(Tokens::Ids(ids))
            }
            (None, Some(e)) => Ok(Tokens::Embeds(e)),
            (Some(_), Some(_)) => bail!("give input_ids or inputs_embeds, not both"),
            (None, None) => bail!("forward needs input_ids (or inputs_embeds)"),
        }
    }
}

#[derive(Default)]
pub struct ForwardOutput {
    pub logits: Option<Tensor>,
    pub loss: Option<Tensor>,
    pub last_hidden_state: Option<Tensor>,
    pub pooler_output: Option<Tensor>,
    /// When the loss was fused with the head (training): the final hidden states, whose logits
    /// (`lm_head`) were not made; a caller that wants them computes them from these.
    pub head_input: Option<Tensor>,
}

/// An architecture's parsed config: every key read and every size checked, nothing allocated.
pub enum ArchConfig {
    Llama(LlamaConfig),
    LlamaClassifier(LlamaConfig, ClassifierConfig),
    Gpt2(Gpt2Config),
    Bert(BertConfig),
    BertClassifier(BertConfig, ClassifierConfig),
}

impl ArchConfig {
    /// The architecture config.json names, and its config (what `load` and `new` build from,
    /// and what the coverage-guided fuzz target feeds arbitrary JSON to).
    pub fn parse(config: &HfConfig) -> Result<(ArchConfig, String)> {
        let arch = config.architecture()?;
        let parsed = match arch.as_str() {
            "LlamaForCausalLM" => ArchConfig::Llama(LlamaConfig::parse(config, Variant::Llama)?),
            "MistralForCausalLM" => ArchConfig::Llama(LlamaConfig::parse(config, Variant::Mistral)?),
            "Qwen2ForCausalLM" => ArchConfig::Llama(LlamaConfig::parse(config, Variant::Qwen2)?),
            "Qwen3ForCausalLM" => ArchConfig::Llama(LlamaConfig::parse(config, Variant::Qwen3)?),
            "LlamaForSequenceClassification" => ArchConfig::LlamaClassifier(LlamaConfig::parse(config, Variant::Llama)?, ClassifierConfig::parse(config)?),
            "MistralForSequenceClassification" => ArchConfig::LlamaClassifier(LlamaConfig::parse(config, Variant::Mistral)?, ClassifierConfig::parse(config)?),
            "Qwen2ForSequenceClassification" => ArchConfig::LlamaClassifier(LlamaConfig::parse(config, Variant::Qwen2)?, ClassifierConfig::parse(config)?),
            "Qwen3ForSequenceClassification" => ArchConfig::LlamaClassifier(LlamaConfig::parse(config, Variant::Qwen3)?, ClassifierConfig::parse(config)?),
            "GPT2LMHeadModel" => ArchConfig::Gpt2(Gpt2Config::parse(config)?),
            "BertModel" => ArchConfig::Bert(BertConfig::parse(config)?),
            "BertForSequenceClassification" => ArchConfig::BertClassifier(BertConfig::parse(config)?, ClassifierConfig::parse(config)?),
            other => bail!("architecture '{other}' is not supported (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, their ForSequenceClassification heads, GPT2LMHeadModel, BertModel, BertForSequenceClassification)"),
        };
        Ok((parsed, arch))
    }
}

fn build(config: &HfConfig, weights: &mut Weights, device: Device) -> Result<(Family, String)> {
    let (parsed, arch) = ArchConfig::parse(config)?;
    let family = match parsed {
        ArchConfig::Llama(c) => Family::Llama(LlamaForCausalLM::load(weights, c, device)?),
        ArchConfig::LlamaClassifier(c, head) => Family::LlamaClassifier(LlamaForSequenceClassification::load(weights, c, head, device)?),
        ArchConfig::Gpt2(c) => Family::Gpt2(Gpt2LMHeadModel::load(weights, c)?),
        ArchConfig::Bert(c) => Family::Bert(BertModel::load(weights, c, "")?),
        ArchConfig::BertClassifier(c, head) => Family::BertClassifier(BertForSequenceClassification::load(weights, c, head)?),
    };
    Ok((family, arch))
}

impl Model {
    /// Loads a Hugging Face model directory, or a GGUF file (or a directory holding one and no
    /// config.json); `kind` converts floating-point weights. Parameters
    /// require gradients; the model is in eval mode.
    pub fn load(dir: &Path, kind: Option<Kind>, device: Device) -> Result<Model> {
        Model::load_with(dir, kind, device, false)
    }

    /// `load`; with `keep_quantized`, a GGUF's quantised linear weights stay in their blocks
    /// (frozen, de-quantised at each forward: a small base for adapters).
    pub fn load_with(dir: &Path, kind: Option<Kind>, device: Device, keep_quantized: bool) -> Result<Model> {
        module::check_weight_dtype(kind)?;
        if let Some(file) = crate::gguf::load::gguf_file(dir)? {
            return crate::gguf::load::load_model(&file, kind, device, keep_quantized);
        }
        if keep_quantized {
            bail!("{}: only a GGUF file holds quantised weights to keep", dir.display());
        }
        let config = HfConfig::read(dir)?;
        let generation = HfConfig::read_generation(dir)?;
        let mut weights = Weights::load(dir, kind, device)?;
        Model::from_weights(config, generation, &mut weights, device, dir)
    }

    /// Builds the model `config` describes from checkpoint `weights` read from `source`, every
    /// one of which it must use.
    pub fn from_weights(config: HfConfig, generation: Option<HfConfig>, weights: &mut Weights, device: Device, source: &Path) -> Result<Model> {
        let (family, architecture) = guard::catch(|| build(&config, weights, device)).with_context(|| format!("loading {}", source.display()))?;
        let model = Model { family, architecture, config, generation, training: false, hooks: Hooks::default(), adapters: Default::default(), checkpointing: None };
        let extra = weights.untaken(|n| model.ignorable(n));
        if !extra.is_empty() {
            bail!("{}: the checkpoint has tensors this architecture does not use: {}", source.display(), extra.join(", "));
        }
        Ok(model)
    }

    /// A randomly initialised model of `arch` with the given config (transformers' defaults
    /// for missing keys where the architecture has them), in training mode.
    pub fn new(arch: &str, mut config: serde_json::Map<String, Value>, kind: Kind, device: Device) -> Result<Model> {
        module::check_weight_dtype(Some(kind))?;
        config.insert("architectures".into(), Value::Array(vec![Value::String(arch.to_string())]));
        let std = config.get("initializer_range").and_then(|v| v.as_f64()).unwrap_or(0.02);
        let config = HfConfig { json: config };
        let mut weights = Weights::fresh(kind, device, std);
        let (family, architecture) = guard::catch(|| build(&config, &mut weights, device))?;
        Ok(Model { family, architecture, config, generation: None, training: true, hooks: Hooks::default(), adapters: Default::default(), checkpointing: None })
    }

    fn ignorable(&self, name: &str) -> bool {
        match &self.family {
            Family::Llama(m) => m.ignorable(name),
            Family::LlamaClassifier(m) => m.ignorable(name),
            Family::Gpt2(m) => m.ignorable(name),
            Family::Bert(m) => m.ignorable(name),
            Family::BertClassifier(m) => m.ignorable(name),
        }
    }

    /// The module tree.
    pub fn root(&self) -> &dyn Module {
        match &self.family {
            Family::Llama(m) => m,
            Family::LlamaClassifier(m) => m,
            Family::Gpt2(m) => m,
            Family::Bert(m) => m,
            Family::BertClassifier(m) => m,
        }
    }

    pub fn root_mut(&mut self) -> &mut dyn Module {
        match &mut self.family {
            Family::Llama(m) => m,
            Family::LlamaClassifier(m) => m,
            Family::Gpt2(m) => m,
            Family::Bert(m) => m,
            Family::BertClassifier(m) => m,
        }
    }

    /// Every parameter by its Hugging Face name, in tree order.
    pub fn named_parameters(&self) -> Vec<NamedParam> {
        module::named_parameters(self.root())
    }

    fn ctx(&self) -> Ctx<'_> {
        // As transformers: layers are checkpointed in training mode only.
        let checkpoint = if self.training { self.checkpointing.as_ref() } else { None };
        Ctx { training: self.training, hooks: &self.hooks, adapters_off: self.adapters.disabled, checkpoint, setup: self.adapters.setup.as_ref(), prefixes: None }
    }

    /// Switches gradient checkpointing of every decoder or encoder layer on (given the shared
    /// model it is, which backward recomputes layers through) or off (None). Layers run with a
    /// key/value cache (generation, prefix tuning) are never checkpointed.
    pub fn set_gradient_checkpointing(&mut self, shared: Option<Weak<RefCell<Model>>>) {
        self.checkpointing = shared.map(|weak| -> Reach {
            Rc::new(move |f| {
                let model = weak.upgrade().ok_or_else(|| anyhow::anyhow!("backward through a checkpointed layer: the model was freed after the forward pass"))?;
                let model = model.try_borrow().map_err(|_| anyhow::anyhow!("backward through a checkpointed layer: the model is being changed right now"))?;
                f(model.root(), &model.hooks)
            })
        });
    }

    pub fn is_gradient_checkpointing(&self) -> bool {
        self.checkpointing.is_some()
    }

    pub fn is_causal_lm(&self) -> bool {
        matches!(self.family, Family::Llama(_) | Family::Gpt2(_))
    }

    fn first_parameter(&self) -> Option<Tensor> {
        self.named_parameters().into_iter().next().map(|p| p.tensor)
    }

    /// The dtype of the floating-point weights (quantised ones are stored otherwise).
    pub fn dtype(&self) -> Kind {
        self.named_parameters().into_iter().map(|p| p.tensor.kind()).find(|k| crate::tensor::dtype::is_floating(*k)).unwrap_or(Kind::Float)
    }

    pub fn device(&self) -> Device {
        self.first_parameter().map(|t| t.device()).unwrap_or(Device::Cpu)
    }

    pub fn new_cache(&self) -> Option<KvCache> {
        match &self.family {
            Family::Llama(m) => Some(KvCache::new(m.num_layers())),
            Family::Gpt2(m) => Some(KvCache::new(m.num_layers())),
            Family::Bert(_) | Family::BertClassifier(_) | Family::LlamaClassifier(_) => None,
        }
    }

    /// Runs `f` on the submodule named `path` if its forward takes one tensor.
    pub fn forward_submodule(&self, path: &str, x: &Tensor) -> Result<Tensor> {
        let m = module::get_submodule(self.root(), path)?;
        match guard::catch(|| m.forward_tensor(&self.ctx(), x).transpose())? {
            Some(out) => Ok(out),
            None => bail!("'{path}' ({}) does not take a single tensor; call the whole model, or a submodule that does (Linear, Embedding, a norm, an MLP)", m.class_name()),
        }
    }

    /// A causal LM's final hidden states (B, T, hidden), continuing from `cache` if given. With a
    /// prompt adapter active, its virtual tokens come first (and `padding` and `positions`, which
    /// describe the given tokens only, are shifted past them): prompt tuning's embeddings are
    /// prepended on the first pass (T grows by their number), prefix tuning's keys and values
    /// start the cache.
    pub fn causal_hidden(&self, tokens: &Tokens, padding: Option<&Tensor>, positions: Option<&Tensor>, cache: Option<&mut KvCache>) -> Result<Tensor> {
        let ctx = self.ctx();
        let prompt = match &self.family {
            Family::Llama(m) => m.prompt_encoder.active_one(&ctx),
            Family::Gpt2(m) => m.prompt_encoder.active_one(&ctx),
            Family::Bert(_) | Family::BertClassifier(_) | Family::LlamaClassifier(_) => bail!("{} has no next-token logits", self.architecture),
        };
        let Some(prompt) = prompt else { return self.family_hidden(&ctx, tokens, padding, positions, cache) };
        let (b, _) = tokens.batch_and_length()?;
        let n = prompt.num_virtual_tokens();
        let device = tokens.device();
        let padding = padding.map(|p| Tensor::f_cat(&[&Tensor::f_ones([b, n], (p.kind(), device))?, p], 1)).transpose()?;
        let positions = positions.map(|p| p.f_add_scalar(n)).transpose()?;
        let first = cache.as_ref().is_none_or(|c| c.is_empty());
        if let Some(virtual_embeds) = prompt.embeddings(b)? {
            if !first {
                return self.family_hidden(&ctx, tokens, padding.as_ref(), positions.as_ref(), cache);
            }
            let embeds = match tokens {
                Tokens::Ids(ids) => self.embed_ids(&ctx, ids)?,
                Tokens::Embeds(e) => e.shallow_clone(),
            };
            let joined = Tensor::f_cat(&[&virtual_embeds.f_to_kind(embeds.kind())?, &embeds], 1)?;
            let positions = positions.map(|p| Tensor::f_cat(&[&Tensor::f_arange(n, (p.kind(), device))?.f_unsqueeze(0)?.f_expand([b, n], false)?, &p], 1)).transpose()?;
            return self.family_hidden(&ctx, &Tokens::Embeds(&joined), padding.as_ref(), positions.as_ref(), cache);
        }
        let Some(prefix) = prompt.prefix(b)? else { bail!("the active prompt adapter gives neither embeddings nor a prefix") };
        let kind = self.dtype();
        let prefix = prefix.into_iter().map(|(k, v)| Ok((k.f_to_kind(kind)?, v.f_to_kind(kind)?))).collect::<Result<Vec<_>>>()?;
        match cache {
            None => {
                let mut own = KvCache::with_prefix(prefix)?;
                self.family_hidden(&ctx, tokens, padding.as_ref(), positions.as_ref(), Some(&mut own))
            }
            Some(c) if c.is_empty() => {
                *c = KvCache::with_prefix(prefix)?;
                self.family_hidden(&ctx, tokens, padding.as_ref(), positions.as_ref(), Some(c))
            }
            Some(c) => self.family_hidden(&ctx, tokens, padding.as_ref(), positions.as_ref(), Some(c)),
        }
    }

    fn family_hidden(&self, ctx: &Ctx, tokens: &Tokens, padding: Option<&Tensor>, positions: Option<&Tensor>, cache: Option<&mut KvCache>) -> Result<Tensor> {
        match &self.family {
            Family::Llama(m) => m.hidden(ctx, tokens, padding, positions, cache),
            Family::Gpt2(m) => m.hidden(ctx, tokens, padding, positions, cache),
            Family::Bert(_) | Family::BertClassifier(_) | Family::LlamaClassifier(_) => bail!("{} has no next-token logits", self.architecture),
        }
    }

    /// The input embeddings of token ids (B, T) → (B, T, hidden), without position embeddings.
    pub fn embed_ids(&self, ctx: &Ctx, ids: &Tensor) -> Result<Tensor> {
        match &self.family {
            Family::Llama(m) => m.model.embed_tokens.forward(ctx, ids),
            Family::LlamaClassifier(m) => m.model.embed_tokens.forward(ctx, ids),
            Family::Gpt2(m) => m.transformer.wte.forward(ctx, ids),
            Family::Bert(m) => m.embeddings.word_embeddings.forward(ctx, ids),
            Family::BertClassifier(m) => m.bert.embeddings.word_embeddings.forward(ctx, ids),
        }
    }

    /// The width of the input embeddings.
    pub fn hidden_size(&self) -> i64 {
        match &self.family {
            Family::Llama(m) => m.config.hidden_size,
            Family::LlamaClassifier(m) => m.config.hidden_size,
            Family::Gpt2(m) => m.config.n_embd,
            Family::Bert(m) => m.config.hidden_size,
            Family::BertClassifier(m) => m.bert.config.hidden_size,
        }
    }

    /// (layers, kv_heads, head_dim) of a causal LM's attention: the shape of a KV-cache prefix.
    pub fn kv_layout(&self) -> Result<(i64, i64, i64)> {
        match &self.family {
            Family::Llama(m) => Ok((m.config.num_layers, m.config.num_kv_heads, m.config.head_dim)),
            Family::LlamaClassifier(m) => Ok((m.config.num_layers, m.config.num_kv_heads, m.config.head_dim)),
            Family::Gpt2(m) => Ok((m.config.n_layer, m.config.n_head, m.config.n_embd / m.config.n_head)),
            Family::Bert(_) | Family::BertClassifier(_) => bail!("{} is an encoder: it has no key/value cache", self.architecture),
        }
    }

    /// The context forward passes run in (training mode, hooks, adapters on or off).
    pub fn forward_ctx(&self) -> Ctx<'_> {
        self.ctx()
    }

    /// Logits (B, T, vocab) from a causal LM's final hidden states.
    pub fn lm_head(&self, hidden: &Tensor) -> Result<Tensor> {
        let ctx = self.ctx();
        match &self.family {
            Family::Llama(m) => m.logits(&ctx, hidden),
            Family::Gpt2(m) => m.logits(&ctx, hidden),
            Family::Bert(_) | Family::BertClassifier(_) | Family::LlamaClassifier(_) => bail!("{} has no language-modelling head", self.architecture),
        }
    }

    /// Next-token logits (B, T, vocab) of a causal LM, continuing from `cache` if given.
    pub fn causal_logits(&self, ids: &Tensor, padding: Option<&Tensor>, positions: Option<&Tensor>, cache: Option<&mut KvCache>) -> Result<Tensor> {
        if self.parallel_channels().is_some() {
            bail!("a Parallel adapter setup runs through model:forward only; activate one adapter or a Stack to generate");
        }
        self.lm_head(&self.causal_hidden(&Tokens::Ids(ids), padding, positions, cache)?)
    }

    pub fn forward(&self, input: &ForwardInput, cache: Option<&mut KvCache>) -> Result<ForwardOutput> {
        guard::catch(|| self.forward_unguarded(input, cache))
    }

    /// The number of copies of the batch the active setup runs on (a `Parallel` block), if any.
    fn parallel_channels(&self) -> Option<i64> {
        if self.adapters.disabled {
            return None;
        }
        self.adapters.setup.as_ref().and_then(|s| s.parallel_channels())
    }

    fn forward_unguarded(&self, input: &ForwardInput, cache: Option<&mut KvCache>) -> Result<ForwardOutput> {
        let replicated;
        let input = match self.parallel_channels() {
            Some(_) if cache.is_some() => bail!("a Parallel adapter setup runs without a KV cache; activate one adapter or a Stack to generate"),
            Some(n) => {
                // As AdapterHub: the outputs come back n times the batch, adapter by adapter.
                replicated = input.repeated(n)?;
                &replicated
            }
            None => input,
        };
        let tokens = input.tokens()?;
        if let Family::LlamaClassifier(m) = &self.family {
            if cache.is_some() || input.token_type_ids.is_some() {
                bail!("{} takes no cache and no token_type_ids", self.architecture);
            }
            let logits = m.logits(&self.ctx(), &tokens, input.attention_mask.as_ref(), input.position_ids.as_ref())?;
            let loss = input.labels.as_ref().map(|labels| m.head.loss(&logits, labels)).transpose()?;
            return Ok(ForwardOutput { logits: Some(logits), loss, ..Default::default() });
        }
        if let Family::BertClassifier(m) = &self.family {
            if cache.is_some() {
                bail!("{} is an encoder: it takes no cache", self.architecture);
            }
            let logits = m.logits(&self.ctx(), &tokens, input.attention_mask.as_ref(), input.token_type_ids.as_ref(), input.position_ids.as_ref())?;
            let loss = input.labels.as_ref().map(|labels| m.head.loss(&logits, labels)).transpose()?;
            return Ok(ForwardOutput { logits: Some(logits), loss, ..Default::default() });
        }
        if let Family::Bert(m) = &self.family {
            if input.labels.is_some() {
                bail!("{} has no language-modelling head: labels are not accepted", self.architecture);
            }
            if cache.is_some() {
                bail!("{} is an encoder: it takes no cache", self.architecture);
            }
            let (hidden, pooled) = m.forward(&self.ctx(), &tokens, input.attention_mask.as_ref(), input.token_type_ids.as_ref(), input.position_ids.as_ref())?;
            return Ok(ForwardOutput { last_hidden_state: Some(hidden), pooler_output: pooled, ..Default::default() });
        }
        if input.token_type_ids.is_some() {
            bail!("{} takes no token_type_ids", self.architecture);
        }
        let hidden = self.causal_hidden(&tokens, input.attention_mask.as_ref(), input.position_ids.as_ref(), cache)?;
        let last_hidden_state = input.output_hidden_states.then(|| hidden.shallow_clone());
        let Some(labels) = &input.labels else {
            return Ok(ForwardOutput { logits: Some(self.lm_head(&hidden)?), last_hidden_state, ..Default::default() });
        };
        // Virtual tokens before the input (prompt tuning) are not predicted: -100 there.
        let virtual_tokens = hidden.size()[1] - tokens.batch_and_length()?.1;
        let labels = if virtual_tokens > 0 && labels.dim() == 2 {
            let ignored = Tensor::f_full([labels.size()[0], virtual_tokens], -100, (labels.kind(), labels.device()))?;
            Tensor::f_cat(&[&ignored, labels], 1)?
        } else {
            labels.shallow_clone()
        };
        // Training (gradients on) with a bare head: the head and the loss fused, no logits made.
        if crate::tensor::shim::grad_enabled() {
            if let Some(weight) = self.bare_head() {
                let loss = causal_lm_loss_fused(&hidden, &weight, &labels)?;
                return Ok(ForwardOutput { loss: Some(loss), last_hidden_state, head_input: Some(hidden), ..Default::default() });
            }
        }
        let logits = self.lm_head(&hidden)?;
        let loss = causal_lm_loss(&logits, &labels)?;
        Ok(ForwardOutput { logits: Some(logits), loss: Some(loss), last_hidden_state, ..Default::default() })
    }

    /// A causal LM's head weight (vocab, hidden) when the head is that weight alone for this
    /// pass (no adapter, hook or invertible adapter before it, a plain float layout).
    fn bare_head(&self) -> Option<Tensor> {
        let ctx = self.ctx();
        match &self.family {
            Family::Llama(m) if m.model.invertible_adapters.is_empty() => m.lm_head.bare_weight(&ctx).map(|w| w.shallow_clone()),
            Family::Gpt2(m) if m.transformer.invertible_adapters.is_empty() => m.lm_head.bare_weight(&ctx).map(|w| w.shallow_clone()),
            _ => None,
        }
    }

    /// The base model's parameters by name (tied weights once), weights kept quantised
    /// de-quantised to the model's dtype: what a checkpoint of the model holds.
    pub fn base_weights(&self) -> Result<Vec<NamedParam>> {
        let root = self.root();
        let mut out = Vec::new();
        for mut p in self.named_parameters().into_iter().filter(|p| p.owner == module::Owner::Base) {
            let (path, _) = p.name.rsplit_once('.').unwrap_or(("", &p.name));
            if let Some(linear) = module::get_submodule(root, path)?.as_any().downcast_ref::<crate::nn::linear::Linear>() {
                if matches!(linear.layout, crate::nn::linear::Layout::Quantized { .. } | crate::nn::linear::Layout::FourBit) && p.name.ends_with(".weight") {
                    p.tensor = linear.weight_out_in()?.f_detach()?.f_to_kind(self.dtype())?;
                }
            }
            out.push(p);
        }
        Ok(out)
    }

    /// Writes config.json, model.safetensors (the base model's parameters by name, tied weights
    /// once) and generation_config.json if the model has one, atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let tensors = self.base_weights()?.into_iter().map(|p| (p.name, p.tensor)).collect();
        let metadata = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
        save_safetensors(&dir.join("model.safetensors"), &tensors, Some(metadata))?;
        let mut config = self.config.json.clone();
        config.insert("torch_dtype".into(), Value::String(crate::tensor::dtype_name(self.dtype())));
        write_atomic(&dir.join("config.json"), serde_json::to_string_pretty(&Value::Object(config))?.as_bytes())?;
        if let Some(g) = &self.generation {
            write_atomic(&dir.join("generation_config.json"), serde_json::to_string_pretty(&Value::Object(g.json.clone()))?.as_bytes())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::llama::LlamaDecoderLayer;
    use crate::module_children;
    use crate::nn::attach::{LinearAdapter, Norm, ResidualAdapter};
    use crate::nn::linear::Linear;
    use crate::nn::module::{get_submodule_mut, Owner, ParamCounts};

    /// A linear adapter that scales the base output per feature.
    struct Scale {
        weight: Tensor,
    }

    impl Module for Scale {
        fn class_name(&self) -> &'static str {
            "Scale"
        }
        fn own_parameters(&self) -> Vec<(&str, &Tensor)> {
            vec![("weight", &self.weight)]
        }
        fn owner(&self) -> Owner {
            Owner::Adapter("probe".into())
        }
        module_children!();
    }

    impl LinearAdapter for Scale {
        fn forward(&self, _ctx: &Ctx, _base: &Linear, _x: &Tensor, base_out: Tensor) -> Result<Tensor> {
            Ok(base_out.f_mul(&self.weight)?)
        }
    }

    /// A residual adapter that drops the sublayer: the layer's output is the residual alone.
    struct Skip;

    impl Module for Skip {
        fn class_name(&self) -> &'static str {
            "Skip"
        }
        module_children!();
    }

    /// Keeps only the residual: its output is zero and it adds nothing after.
    impl ResidualAdapter for Skip {
        fn pre(&self, _ctx: &Ctx, output: &Tensor, residual: &Tensor, _norm: Option<&dyn Norm>, _q: Option<bool>) -> Result<(Tensor, Option<Tensor>, Tensor)> {
            Ok((output.shallow_clone(), None, residual.shallow_clone()))
        }
        fn forward(&self, _ctx: &Ctx, x: &Tensor, _adapter_residual: &Tensor) -> Result<(Tensor, Tensor)> {
            Ok((x.zeros_like(), x.zeros_like()))
        }
        fn post(&self, _ctx: &Ctx, h: Tensor, _output: &Tensor, residual: &Tensor, _norm: Option<&dyn Norm>) -> Result<Tensor> {
            Ok(h.f_add(residual)?)
        }
    }

    fn tiny_llama() -> Model {
        let config = serde_json::json!({ "vocab_size": 40, "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2,
                                         "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 32 });
        let serde_json::Value::Object(map) = config else { unreachable!("a JSON object") };
        tch::manual_seed(0);
        let mut model = Model::new("LlamaForCausalLM", map, Kind::Float, Device::Cpu).unwrap();
        model.training = false;
        model
    }

    /// Whether two runs of the model differ at all (CPU runs of the same computation agree
    /// exactly; how much a tiny random model changes depends on its draw, which tests running
    /// in parallel share).
    fn changed(a: &Tensor, b: &Tensor) -> bool {
        a.f_sub(b).unwrap().abs().max().double_value(&[]) > 0.0
    }

    fn logits(model: &Model, ids: &Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        model.forward(&ForwardInput { input_ids: Some(ids.shallow_clone()), ..Default::default() }, None).unwrap().logits.unwrap()
    }

    #[test]
    fn adapters_attach_at_linear_and_residual_points() {
        let mut model = tiny_llama();
        let ids = Tensor::from_slice(&[3i64, 7, 1, 9]).view([1, 4]);
        let plain = logits(&model, &ids);
        let base_count = model.named_parameters().len();
        let q = get_submodule_mut(model.root_mut(), "model.layers.0.self_attn.q_proj").unwrap();
        let q = q.as_any_mut().downcast_mut::<Linear>().unwrap();
        q.adapters.attach("probe", Box::new(Scale { weight: Tensor::ones([16], (Kind::Float, Device::Cpu)) })).unwrap();
        assert!(q.adapters.attach("probe", Box::new(Scale { weight: Tensor::ones([16], (Kind::Float, Device::Cpu)) })).is_err());
        // Scaling by ones changes nothing; the adapter's parameter is in the tree, owned by it.
        assert!(logits(&model, &ids).allclose(&plain, 1e-6, 1e-6, false));
        let params = model.named_parameters();
        let probe = params.iter().find(|p| p.name == "model.layers.0.self_attn.q_proj.adapters.probe.weight").unwrap();
        assert_eq!(probe.owner, Owner::Adapter("probe".into()));
        let counts = ParamCounts::of(&params);
        assert_eq!(counts.by_owner.iter().map(|(o, n, _)| (o.as_str(), *n)).collect::<Vec<_>>()[1], ("probe", 16));
        // Zeroing it silences the queries of layer 0, which changes the output.
        let _ = probe.tensor.shallow_clone().f_zero_().unwrap();
        assert!(changed(&logits(&model, &ids), &plain));
        let q = get_submodule_mut(model.root_mut(), "model.layers.0.self_attn.q_proj").unwrap().as_any_mut().downcast_mut::<Linear>().unwrap();
        q.adapters.set_active(&[]).unwrap();
        assert!(logits(&model, &ids).allclose(&plain, 1e-6, 1e-6, false), "an inactive adapter is skipped");
        let q = get_submodule_mut(model.root_mut(), "model.layers.0.self_attn.q_proj").unwrap().as_any_mut().downcast_mut::<Linear>().unwrap();
        q.adapters.detach("probe").unwrap();
        assert_eq!(model.named_parameters().len(), base_count);
        // A residual adapter that keeps only the residual removes layer 1's MLP.
        let layer = get_submodule_mut(model.root_mut(), "model.layers.1").unwrap().as_any_mut().downcast_mut::<LlamaDecoderLayer>().unwrap();
        layer.output_adapters.adapters.attach("skip", Box::new(Skip)).unwrap();
        let skipped = logits(&model, &ids);
        assert!(changed(&skipped, &plain));
        let down = get_submodule_mut(model.root_mut(), "model.layers.1.mlp.down_proj").unwrap().as_any_mut().downcast_mut::<Linear>().unwrap();
        let _ = tch::no_grad(|| down.weight.shallow_clone().f_zero_()).unwrap();
        assert!(logits(&model, &ids).allclose(&skipped, 1e-6, 1e-6, false), "with the MLP skipped its weights do not matter");
        assert!(module::named_modules(model.root()).iter().any(|(n, _)| n == "model.layers.1.output_adapters.skip"));
    }

    #[test]
    fn a_model_without_hooks_or_adapters_lists_only_its_own_modules() {
        let model = tiny_llama();
        let names: Vec<String> = module::named_modules(model.root()).into_iter().map(|(n, _)| n).collect();
        assert!(names.iter().all(|n| !n.contains("adapters")), "{names:?}");
        assert_eq!(names.len(), 1 + 1 + 1 + 1 + 2 * (1 + 1 + 4 + 1 + 3 + 2) + 1 + 1);
    }
}
