//! The Llama family (Touvron et al., 2023): `LlamaForCausalLM`, `MistralForCausalLM`,
//! `Qwen2ForCausalLM` and `Qwen3ForCausalLM`, matching transformers' modeling_llama.py and its
//! siblings: pre-norm decoder blocks with RMSNorm, grouped-query attention with rotary
//! positions, and a SwiGLU MLP. The variants differ in biases (Qwen2's q/k/v), per-head q/k
//! RMSNorm (Qwen3) and sliding-window layers (Mistral, Qwen2/3 when configured).
//!
//! The tree is transformers': `model.embed_tokens`, `model.layers.N.{input_layernorm, self_attn.
//! {q,k,v,o}_proj, post_attention_layernorm, mlp.{gate,up,down}_proj}`, `model.norm`, `lm_head`;
//! each layer has residual points after attention and after the MLP (AdapterHub's
//! `attention_adapters` and `output_adapters`), and the model an invertible point.

use anyhow::{bail, Result};
use tch::{Device, Tensor};

use super::cache::KvCache;
use super::config::{HfConfig, MAX_LAYERS, MAX_WIDTH};
use super::input::Tokens;
use super::mask::{self, Attend};
use super::rope::{Rope, RopeConfig};
use crate::tensor::shim;
use crate::module_children;
use crate::nn::checkpoint;
use crate::nn::attach::{InvertiblePoint, PrefixPoint, PrefixPoolPoint, PromptPoint, ResidualPoint};
use crate::nn::embedding::Embedding;
use crate::nn::hooks::Ctx;
use crate::nn::linear::{Layout, Linear};
use crate::nn::module::{Module, ModuleList};
use crate::nn::norm::RmsNorm;
use crate::nn::weights::Weights;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Variant {
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
}

#[derive(Clone, Debug)]
pub struct LlamaConfig {
    pub variant: Variant,
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_layers: i64,
    pub num_heads: i64,
    pub num_kv_heads: i64,
    pub head_dim: i64,
    pub rms_norm_eps: f64,
    pub rope: RopeConfig,
    /// Biases of (q, k, v) and of o.
    pub qkv_bias: bool,
    pub o_bias: bool,
    pub mlp_bias: bool,
    pub tie_word_embeddings: bool,
    /// The embedding row that gets no gradient (transformers passes it as `padding_idx`).
    pub pad_token_id: Option<i64>,
    pub attention_dropout: f64,
    /// The sliding window of each layer (None = full attention).
    pub windows: Vec<Option<i64>>,
}

impl LlamaConfig {
    pub fn parse(cfg: &HfConfig, variant: Variant) -> Result<LlamaConfig> {
        cfg.require_one_of("hidden_act", &["silu"], "silu")?;
        if cfg.int_or("pretraining_tp", 1)? != 1 {
            bail!("config key 'pretraining_tp' other than 1 is not supported");
        }
        let hidden_size = cfg.size("hidden_size", MAX_WIDTH)?;
        let num_heads = cfg.size("num_attention_heads", MAX_LAYERS)?;
        let num_layers = cfg.size("num_hidden_layers", MAX_LAYERS)?;
        let num_kv_heads = cfg.size_or("num_key_value_heads", num_heads, MAX_LAYERS)?;
        if num_heads % num_kv_heads != 0 {
            bail!("num_attention_heads ({num_heads}) must be a positive multiple of num_key_value_heads ({num_kv_heads})");
        }
        let head_dim = match cfg.opt_size("head_dim", MAX_WIDTH)? {
            Some(d) => d,
            None if hidden_size % num_heads == 0 => hidden_size / num_heads,
            None => bail!("hidden_size ({hidden_size}) is not divisible by num_attention_heads ({num_heads})"),
        };
        let attention_bias = cfg.bool_or("attention_bias", false)?;
        let (qkv_bias, o_bias) = match variant {
            Variant::Qwen2 => (true, false),
            Variant::Mistral => (false, false),
            _ => (attention_bias, attention_bias),
        };
        let window = cfg.opt_int("sliding_window")?;
        let windows = match variant {
            Variant::Llama => vec![None; num_layers as usize],
            Variant::Mistral => vec![window; num_layers as usize],
            Variant::Qwen2 | Variant::Qwen3 => layer_windows(cfg, num_layers, window)?,
        };
        Ok(LlamaConfig {
            variant,
            vocab_size: cfg.size("vocab_size", MAX_WIDTH)?,
            hidden_size,
            intermediate_size: cfg.size("intermediate_size", MAX_WIDTH)?,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: cfg.float_or("rms_norm_eps", 1e-6)?,
            rope: RopeConfig::parse(cfg)?,
            qkv_bias,
            o_bias,
            mlp_bias: cfg.bool_or("mlp_bias", false)?,
            tie_word_embeddings: cfg.bool_or("tie_word_embeddings", false)?,
            pad_token_id: cfg.opt_token_id("pad_token_id", cfg.size("vocab_size", MAX_WIDTH)?)?,
            attention_dropout: cfg.float_or("attention_dropout", 0.0)?,
            windows,
        })
    }
}

/// Qwen2/Qwen3: `layer_types` if given, else sliding layers from `max_window_layers` on when
/// `use_sliding_window` is set (transformers' configuration_qwen2.py).
fn layer_windows(cfg: &HfConfig, num_layers: i64, window: Option<i64>) -> Result<Vec<Option<i64>>> {
    let window = if cfg.bool_or("use_sliding_window", false)? { window } else { None };
    if let Some(types) = cfg.json.get("layer_types").and_then(|v| v.as_array()) {
        if types.len() != num_layers as usize {
            bail!("layer_types has {} entries for {num_layers} layers", types.len());
        }
        return types
            .iter()
            .map(|t| match t.as_str() {
                Some("full_attention") => Ok(None),
                Some("sliding_attention") => Ok(window),
                other => bail!("layer type {other:?} is not supported"),
            })
            .collect();
    }
    let first_sliding = cfg.int_or("max_window_layers", num_layers)?;
    Ok((0..num_layers).map(|i| if window.is_some() && i >= first_sliding { window } else { None }).collect())
}

pub struct LlamaAttention {
    name: String,
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    pub q_norm: Option<RmsNorm>,
    pub k_norm: Option<RmsNorm>,
    /// AdapterHub prefix tuning's share of this layer, before the keys and values.
    pub prefix_gates: PrefixPoint,
    head_dim: i64,
    num_heads: i64,
    num_kv_heads: i64,
    dropout: f64,
}

/// What every layer of one forward pass shares: rotary cos/sin and how attention is masked.
struct LayerInputs<'a> {
    cos: &'a Tensor,
    sin: &'a Tensor,
    attend: &'a Attend,
}

impl LlamaAttention {
    fn load(w: &mut Weights, name: &str, c: &LlamaConfig) -> Result<LlamaAttention> {
        let (h, hd) = (c.hidden_size, c.head_dim);
        let qk_norm = c.variant == Variant::Qwen3;
        let norm = |w: &mut Weights, which: &str| -> Result<Option<RmsNorm>> {
            if qk_norm { Ok(Some(RmsNorm::load(w, &format!("{name}.{which}"), hd, c.rms_norm_eps)?)) } else { Ok(None) }
        };
        Ok(LlamaAttention {
            name: name.to_string(),
            q_proj: Linear::load(w, &format!("{name}.q_proj"), h, c.num_heads * hd, c.qkv_bias, Layout::OutIn)?,
            k_proj: Linear::load(w, &format!("{name}.k_proj"), h, c.num_kv_heads * hd, c.qkv_bias, Layout::OutIn)?,
            v_proj: Linear::load(w, &format!("{name}.v_proj"), h, c.num_kv_heads * hd, c.qkv_bias, Layout::OutIn)?,
            o_proj: Linear::load(w, &format!("{name}.o_proj"), c.num_heads * hd, h, c.o_bias, Layout::OutIn)?,
            q_norm: norm(w, "q_norm")?,
            k_norm: norm(w, "k_norm")?,
            head_dim: hd,
            num_heads: c.num_heads,
            num_kv_heads: c.num_kv_heads,
            prefix_gates: PrefixPoint::default(),
            dropout: c.attention_dropout,
        })
    }

    /// (B, T, heads·hd) → (B, heads, T, hd), with the per-head norm if any.
    fn heads(&self, ctx: &Ctx, x: Tensor, b: i64, t: i64, norm: &Option<RmsNorm>) -> Result<Tensor> {
        let x = x.f_view([b, t, -1, self.head_dim])?;
        let x = match norm {
            Some(n) => n.forward(ctx, &x)?,
            None => x,
        };
        Ok(x.f_transpose(1, 2)?)
    }

    /// x (B, T, hidden) → (B, T, hidden), appending this layer's keys and values to `cache`.
    fn forward(&self, ctx: &Ctx, x: &Tensor, l: &LayerInputs, cache: Option<(&mut KvCache, usize)>) -> Result<Tensor> {
        let (b, t) = (x.size()[0], x.size()[1]);
        let hd = self.head_dim;
        let q = shim::rope(&self.heads(ctx, self.q_proj.forward(ctx, x)?, b, t, &self.q_norm)?, l.cos, l.sin)?;
        let mut k = shim::rope(&self.heads(ctx, self.k_proj.forward(ctx, x)?, b, t, &self.k_norm)?, l.cos, l.sin)?;
        let mut v = self.heads(ctx, self.v_proj.forward(ctx, x)?, b, t, &None)?;
        if let Some((cache, layer)) = cache {
            (k, v) = cache.update(layer, k, v)?;
        }
        let (k_added, v_added, added) = self.prefix_gates.apply(ctx, x, k, v)?;
        (k, v) = (k_added, v_added);
        let with_prefix;
        let attend = if added > 0 {
            with_prefix = l.attend.with_prefix(added, b, t, x.device())?;
            &with_prefix
        } else {
            l.attend
        };
        let dropout = if ctx.training { self.dropout } else { 0.0 };
        let (mask, is_causal) = attend.sdpa_args();
        // Without a mask sdpa shares kv heads itself (enable_gqa); with one, repeat them first.
        let groups = self.num_heads / self.num_kv_heads;
        let gqa = groups > 1 && mask.is_none();
        if mask.is_some() {
            (k, v) = (repeat_kv(&k, groups)?, repeat_kv(&v, groups)?);
        }
        let out = Tensor::f_scaled_dot_product_attention(&q, &k, &v, mask, dropout, is_causal, Some((hd as f64).powf(-0.5)), gqa)?;
        let out = self.o_proj.forward(ctx, &out.f_transpose(1, 2)?.f_reshape([b, t, -1])?)?;
        ctx.output(&self.name, x, out)
    }
}

impl Module for LlamaAttention {
    fn class_name(&self) -> &'static str {
        "LlamaAttention"
    }
    module_children!("q_proj" => q_proj, "k_proj" => k_proj, "v_proj" => v_proj, "o_proj" => o_proj, "q_norm" => q_norm, "k_norm" => k_norm, "prefix_gates" => prefix_gates.dict);
}

/// (B, kv_heads, S, hd) → (B, kv_heads·n, S, hd), each kv head repeated n times in place.
fn repeat_kv(x: &Tensor, n: i64) -> Result<Tensor> {
    if n == 1 {
        return Ok(x.shallow_clone());
    }
    let s = x.size();
    Ok(x.f_unsqueeze(2)?.f_expand([s[0], s[1], n, s[2], s[3]], false)?.f_reshape([s[0], s[1] * n, s[2], s[3]])?)
}

pub struct LlamaMlp {
    name: String,
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

impl LlamaMlp {
    fn load(w: &mut Weights, name: &str, c: &LlamaConfig) -> Result<LlamaMlp> {
        let (h, i) = (c.hidden_size, c.intermediate_size);
        Ok(LlamaMlp {
            name: name.to_string(),
            gate_proj: Linear::load(w, &format!("{name}.gate_proj"), h, i, c.mlp_bias, Layout::OutIn)?,
            up_proj: Linear::load(w, &format!("{name}.up_proj"), h, i, c.mlp_bias, Layout::OutIn)?,
            down_proj: Linear::load(w, &format!("{name}.down_proj"), i, h, c.mlp_bias, Layout::OutIn)?,
        })
    }

    /// SwiGLU: x (…, hidden) → (…, hidden).
    pub fn forward(&self, ctx: &Ctx, x: &Tensor) -> Result<Tensor> {
        let gated = shim::swiglu(&self.gate_proj.forward(ctx, x)?, &self.up_proj.forward(ctx, x)?)?;
        let out = self.down_proj.forward(ctx, &gated)?;
        ctx.output(&self.name, x, out)
    }
}

impl Module for LlamaMlp {
    fn class_name(&self) -> &'static str {
        "LlamaMLP"
    }
    fn forward_tensor(&self, ctx: &Ctx, x: &Tensor) -> Option<Result<Tensor>> {
        Some(self.forward(ctx, x))
    }
    module_children!("gate_proj" => gate_proj, "up_proj" => up_proj, "down_proj" => down_proj);
}

pub struct LlamaDecoderLayer {
    name: String,
    pub self_attn: LlamaAttention,
    pub mlp: LlamaMlp,
    pub input_layernorm: RmsNorm,
    pub post_attention_layernorm: RmsNorm,
    /// After attention: `h + attn`.
    pub attention_adapters: ResidualPoint,
    /// After the MLP: `h + mlp`.
    pub output_adapters: ResidualPoint,
}

impl LlamaDecoderLayer {
    fn load(w: &mut Weights, name: &str, c: &LlamaConfig) -> Result<LlamaDecoderLayer> {
        Ok(LlamaDecoderLayer {
            name: name.to_string(),
            input_layernorm: RmsNorm::load(w, &format!("{name}.input_layernorm"), c.hidden_size, c.rms_norm_eps)?,
            self_attn: LlamaAttention::load(w, &format!("{name}.self_attn"), c)?,
            post_attention_layernorm: RmsNorm::load(w, &format!("{name}.post_attention_layernorm"), c.hidden_size, c.rms_norm_eps)?,
            mlp: LlamaMlp::load(w, &format!("{name}.mlp"), c)?,
            attention_adapters: ResidualPoint::default(),
            output_adapters: ResidualPoint::default(),
        })
    }

    /// Pre-norm block: h (B, T, hidden) → (B, T, hidden).
    fn forward(&self, ctx: &Ctx, h: &Tensor, l: &LayerInputs, cache: Option<(&mut KvCache, usize)>) -> Result<Tensor> {
        let x = self.input_layernorm.forward(ctx, h)?;
        let attn = self.self_attn.forward(ctx, &x, l, cache)?;
        let h2 = self.attention_adapters.forward(ctx, attn, h, None)?;
        let x = self.post_attention_layernorm.forward(ctx, &h2)?;
        let m = self.mlp.forward(ctx, &x)?;
        let out = self.output_adapters.forward(ctx, m, &h2, None)?;
        ctx.output(&self.name, h, out)
    }
}

impl Module for LlamaDecoderLayer {
    fn class_name(&self) -> &'static str {
        "LlamaDecoderLayer"
    }
    module_children!(
        "self_attn" => self_attn,
        "mlp" => mlp,
        "input_layernorm" => input_layernorm,
        "post_attention_layernorm" => post_attention_layernorm,
        "attention_adapters" => attention_adapters.adapters.dict,
        "attention_fusion" => attention_adapters.fusion.dict,
        "output_adapters" => output_adapters.adapters.dict,
        "output_fusion" => output_adapters.fusion.dict,
    );
}

/// The decoder without its head (transformers' `LlamaModel`).
pub struct LlamaModel {
    pub embed_tokens: Embedding,
    pub layers: ModuleList<LlamaDecoderLayer>,
    pub norm: RmsNorm,
    /// After the embeddings and (inverted) before the head.
    pub invertible_adapters: InvertiblePoint,
    /// AdapterHub prefix tuning's pools, run once per forward.
    pub prefix_tuning: PrefixPoolPoint,
    rope: Rope,
    windows: Vec<Option<i64>>,
}

impl LlamaModel {
    /// Final hidden states (B, T, hidden) after what `cache` holds.
    pub fn forward(&self, ctx: &Ctx, tokens: &Tokens, padding: Option<&Tensor>, positions: Option<&Tensor>, mut cache: Option<&mut KvCache>) -> Result<Tensor> {
        let (b, t) = tokens.batch_and_length()?;
        if let Some(c) = &cache {
            c.check_layers(self.layers.items.len())?;
        }
        let past = cache.as_ref().map(|c| c.len()).unwrap_or(0);
        let device = tokens.device();
        let positions_given = positions;
        let positions = match positions {
            Some(p) => p.shallow_clone(),
            None => mask::positions(b, t, past, None, device)?,
        };
        let h = match tokens {
            Tokens::Ids(ids) => self.embed_tokens.forward(ctx, ids)?,
            Tokens::Embeds(e) => e.shallow_clone(),
        };
        let mut h = if self.invertible_adapters.is_empty() { h } else { self.invertible_adapters.after_embeddings(ctx, h)? };
        let prefixes = self.prefix_tuning.states(ctx, b)?;
        let ctx = &ctx.with_prefixes(prefixes.as_ref());
        let (cos, sin) = self.rope.cos_sin(&positions, h.kind())?;
        let full = mask::attend(b, t, past, padding, None, positions_given, device)?;
        let mut windowed = None;
        for (i, layer) in self.layers.items.iter().enumerate() {
            let attend = match self.windows[i] {
                None => &full,
                Some(w) => windowed.get_or_insert(mask::attend(b, t, past, padding, Some(w), positions_given, device)?),
            };
            h = match (ctx.checkpoint, cache.as_deref_mut()) {
                (Some(reach), None) => {
                    let (cos, sin, attend) = (cos.shallow_clone(), sin.shallow_clone(), attend.shallow_clone());
                    checkpoint::layer(reach, ctx, layer, &layer.name, &h, move |l: &LlamaDecoderLayer, ctx, x| {
                        l.forward(ctx, x, &LayerInputs { cos: &cos, sin: &sin, attend: &attend }, None)
                    })?
                }
                (_, cache) => layer.forward(ctx, &h, &LayerInputs { cos: &cos, sin: &sin, attend }, cache.map(|c| (c, i)))?,
            };
        }
        self.norm.forward(ctx, &h)
    }
}

impl Module for LlamaModel {
    fn class_name(&self) -> &'static str {
        "LlamaModel"
    }
    module_children!("embed_tokens" => embed_tokens, "layers" => layers, "norm" => norm, "invertible_adapters" => invertible_adapters.dict, "prefix_tuning" => prefix_tuning.dict);
}

/// `LlamaForCausalLM` and its siblings.
impl LlamaModel {
    /// The decoder under `model.` (embeddings, layers, final norm), as every Llama-family head
    /// has it.
    pub fn load(w: &mut Weights, c: &LlamaConfig, device: Device) -> Result<LlamaModel> {
        let embed_tokens = Embedding::load(w, "model.embed_tokens", c.vocab_size, c.hidden_size, c.pad_token_id)?;
        let layers = (0..c.num_layers).map(|i| LlamaDecoderLayer::load(w, &format!("model.layers.{i}"), c)).collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::load(w, "model.norm", c.hidden_size, c.rms_norm_eps)?;
        let rope = Rope::new(&c.rope, c.head_dim, device)?;
        Ok(LlamaModel { embed_tokens, layers: ModuleList { items: layers }, norm, invertible_adapters: InvertiblePoint::default(), prefix_tuning: PrefixPoolPoint::default(), rope, windows: c.windows.clone() })
    }
}

pub struct LlamaForCausalLM {
    pub config: LlamaConfig,
    pub model: LlamaModel,
    pub lm_head: Linear,
    pub prompt_encoder: PromptPoint,
}

impl LlamaForCausalLM {
    pub fn load(w: &mut Weights, config: LlamaConfig, device: Device) -> Result<LlamaForCausalLM> {
        let c = &config;
        let model = LlamaModel::load(w, c, device)?;
        // A tied head shares the embedding (checkpoints may still carry a copy, which is ignored).
        let lm_head = if c.tie_word_embeddings {
            Linear::tied("lm_head", &model.embed_tokens.weight)
        } else {
            Linear::load(w, "lm_head", c.hidden_size, c.vocab_size, false, Layout::OutIn)?
        };
        Ok(LlamaForCausalLM { model, lm_head, config, prompt_encoder: PromptPoint::default() })
    }

    /// Checkpoint tensors that may be present without being parameters.
    pub fn ignorable(&self, name: &str) -> bool {
        name.ends_with("rotary_emb.inv_freq") || (self.config.tie_word_embeddings && name == "lm_head.weight")
    }

    /// Final hidden states (B, T, hidden) for tokens (B, T), after what `cache` holds.
    pub fn hidden(&self, ctx: &Ctx, tokens: &Tokens, padding: Option<&Tensor>, positions: Option<&Tensor>, cache: Option<&mut KvCache>) -> Result<Tensor> {
        self.model.forward(ctx, tokens, padding, positions, cache)
    }

    /// Logits (B, T, vocab) from final hidden states.
    pub fn logits(&self, ctx: &Ctx, hidden: &Tensor) -> Result<Tensor> {
        let invertible = &self.model.invertible_adapters;
        let h = if invertible.is_empty() { hidden.shallow_clone() } else { invertible.before_head(ctx, hidden.shallow_clone())? };
        self.lm_head.forward(ctx, &h)
    }

    pub fn num_layers(&self) -> usize {
        self.model.layers.items.len()
    }
}

impl Module for LlamaForCausalLM {
    fn class_name(&self) -> &'static str {
        match self.config.variant {
            Variant::Llama => "LlamaForCausalLM",
            Variant::Mistral => "MistralForCausalLM",
            Variant::Qwen2 => "Qwen2ForCausalLM",
            Variant::Qwen3 => "Qwen3ForCausalLM",
        }
    }
    module_children!("model" => model, "lm_head" => lm_head, "prompt_encoder" => prompt_encoder.dict);
}
