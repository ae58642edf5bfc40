//! The Llama family (Touvron et al., 2023): `LlamaForCausalLM`, `MistralForCausalLM`,
//! `Qwen2ForCausalLM` and `Qwen3ForCausalLM`, matching transformers' modeling_llama.py and its
//! siblings: pre-norm decoder blocks with RMSNorm, grouped-query attention with rotary
//! positions, and a SwiGLU MLP. The variants differ in biases (Qwen2's q/k/v), per-head q/k
//! RMSNorm (Qwen3) and sliding-window layers (Mistral, Qwen2/3 when configured).

use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

use super::cache::KvCache;
use super::config::HfConfig;
use super::layers::{Embedding, Linear, RmsNorm};
use super::mask::{self, Attend};
use super::rope::{self, Rope, RopeConfig};
use super::weights::Weights;

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
        let hidden_size = cfg.int("hidden_size")?;
        let num_heads = cfg.int("num_attention_heads")?;
        let num_layers = cfg.int("num_hidden_layers")?;
        let num_kv_heads = cfg.int_or("num_key_value_heads", num_heads)?;
        if hidden_size <= 0 || num_heads <= 0 || num_kv_heads <= 0 || num_heads % num_kv_heads != 0 {
            bail!("num_attention_heads ({num_heads}) must be a positive multiple of num_key_value_heads ({num_kv_heads})");
        }
        let head_dim = match cfg.opt_int("head_dim")? {
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
            vocab_size: cfg.int("vocab_size")?,
            hidden_size,
            intermediate_size: cfg.int("intermediate_size")?,
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

struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
}

impl Attention {
    fn load(w: &mut Weights, prefix: &str, c: &LlamaConfig) -> Result<Attention> {
        let (h, hd) = (c.hidden_size, c.head_dim);
        let qk_norm = c.variant == Variant::Qwen3;
        Ok(Attention {
            q_proj: Linear::load(w, &format!("{prefix}.q_proj"), h, c.num_heads * hd, c.qkv_bias)?,
            k_proj: Linear::load(w, &format!("{prefix}.k_proj"), h, c.num_kv_heads * hd, c.qkv_bias)?,
            v_proj: Linear::load(w, &format!("{prefix}.v_proj"), h, c.num_kv_heads * hd, c.qkv_bias)?,
            o_proj: Linear::load(w, &format!("{prefix}.o_proj"), c.num_heads * hd, h, c.o_bias)?,
            q_norm: if qk_norm { Some(RmsNorm::load(w, &format!("{prefix}.q_norm"), hd, c.rms_norm_eps)?) } else { None },
            k_norm: if qk_norm { Some(RmsNorm::load(w, &format!("{prefix}.k_norm"), hd, c.rms_norm_eps)?) } else { None },
        })
    }

    /// (B, T, heads·hd) → (B, heads, T, hd), with the per-head norm if any.
    fn heads(x: Tensor, b: i64, t: i64, hd: i64, norm: &Option<RmsNorm>) -> Result<Tensor> {
        let x = x.f_view([b, t, -1, hd])?;
        let x = match norm {
            Some(n) => n.forward(&x)?,
            None => x,
        };
        Ok(x.f_transpose(1, 2)?)
    }

    #[allow(clippy::too_many_arguments)]
    fn forward(&self, x: &Tensor, cos: &Tensor, sin: &Tensor, attend: &Attend, cache: Option<(&mut KvCache, usize)>, c: &LlamaConfig, train: bool) -> Result<Tensor> {
        let (b, t) = (x.size()[0], x.size()[1]);
        let hd = c.head_dim;
        let q = rope::apply(&Self::heads(self.q_proj.forward(x)?, b, t, hd, &self.q_norm)?, cos, sin)?;
        let mut k = rope::apply(&Self::heads(self.k_proj.forward(x)?, b, t, hd, &self.k_norm)?, cos, sin)?;
        let mut v = Self::heads(self.v_proj.forward(x)?, b, t, hd, &None)?;
        if let Some((cache, layer)) = cache {
            (k, v) = cache.update(layer, k, v)?;
        }
        let dropout = if train { c.attention_dropout } else { 0.0 };
        let (mask, is_causal) = attend.sdpa_args();
        // Without a mask sdpa shares kv heads itself (enable_gqa); with one, repeat them first.
        let groups = c.num_heads / c.num_kv_heads;
        let gqa = groups > 1 && mask.is_none();
        if mask.is_some() {
            (k, v) = (repeat_kv(&k, groups)?, repeat_kv(&v, groups)?);
        }
        let out = Tensor::f_scaled_dot_product_attention(&q, &k, &v, mask, dropout, is_causal, Some((hd as f64).powf(-0.5)), gqa)?;
        self.o_proj.forward(&out.f_transpose(1, 2)?.f_reshape([b, t, -1])?)
    }
}

/// (B, kv_heads, S, hd) → (B, kv_heads·n, S, hd), each kv head repeated n times in place.
fn repeat_kv(x: &Tensor, n: i64) -> Result<Tensor> {
    if n == 1 {
        return Ok(x.shallow_clone());
    }
    let s = x.size();
    Ok(x.f_unsqueeze(2)?.f_expand([s[0], s[1], n, s[2], s[3]], false)?.f_reshape([s[0], s[1] * n, s[2], s[3]])?)
}

struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    fn load(w: &mut Weights, prefix: &str, c: &LlamaConfig) -> Result<Mlp> {
        let (h, i) = (c.hidden_size, c.intermediate_size);
        Ok(Mlp {
            gate_proj: Linear::load(w, &format!("{prefix}.gate_proj"), h, i, c.mlp_bias)?,
            up_proj: Linear::load(w, &format!("{prefix}.up_proj"), h, i, c.mlp_bias)?,
            down_proj: Linear::load(w, &format!("{prefix}.down_proj"), i, h, c.mlp_bias)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gated = self.gate_proj.forward(x)?.f_silu()?.f_mul(&self.up_proj.forward(x)?)?;
        self.down_proj.forward(&gated)
    }
}

struct Block {
    self_attn: Attention,
    mlp: Mlp,
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
}

impl Block {
    fn load(w: &mut Weights, prefix: &str, c: &LlamaConfig) -> Result<Block> {
        Ok(Block {
            input_layernorm: RmsNorm::load(w, &format!("{prefix}.input_layernorm"), c.hidden_size, c.rms_norm_eps)?,
            self_attn: Attention::load(w, &format!("{prefix}.self_attn"), c)?,
            post_attention_layernorm: RmsNorm::load(w, &format!("{prefix}.post_attention_layernorm"), c.hidden_size, c.rms_norm_eps)?,
            mlp: Mlp::load(w, &format!("{prefix}.mlp"), c)?,
        })
    }
}

pub struct Llama {
    pub config: LlamaConfig,
    embed_tokens: Embedding,
    layers: Vec<Block>,
    norm: RmsNorm,
    lm_head: Tensor,
    rope: Rope,
}

impl Llama {
    pub fn load(w: &mut Weights, config: LlamaConfig, device: Device) -> Result<Llama> {
        let c = &config;
        let embed_tokens = Embedding::load(w, "model.embed_tokens", c.vocab_size, c.hidden_size)?;
        let layers = (0..c.num_layers).map(|i| Block::load(w, &format!("model.layers.{i}"), c)).collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::load(w, "model.norm", c.hidden_size, c.rms_norm_eps)?;
        // A tied head shares the embedding (checkpoints may still carry a copy, which is ignored).
        let lm_head = if c.tie_word_embeddings {
            embed_tokens.weight.shallow_clone()
        } else {
            w.param("lm_head.weight", &[c.vocab_size, c.hidden_size], super::weights::Init::Normal)?
        };
        let rope = Rope::new(&c.rope, c.head_dim, device)?;
        Ok(Llama { embed_tokens, layers, norm, lm_head, rope, config })
    }

    /// Checkpoint tensors that may be present without being parameters.
    pub fn ignorable(&self, name: &str) -> bool {
        name.ends_with("rotary_emb.inv_freq") || (self.config.tie_word_embeddings && name == "lm_head.weight")
    }

    /// Final hidden states (B, T, hidden) for `ids` (B, T), after what `cache` holds.
    pub fn hidden(&self, ids: &Tensor, padding: Option<&Tensor>, positions: Option<&Tensor>, mut cache: Option<&mut KvCache>, train: bool) -> Result<Tensor> {
        let size = ids.size();
        if size.len() != 2 {
            bail!("input_ids must be (batch, seq), got shape {size:?}");
        }
        let (b, t) = (size[0], size[1]);
        let past = cache.as_ref().map(|c| c.len()).unwrap_or(0);
        let device = ids.device();
        let positions = match positions {
            Some(p) => p.shallow_clone(),
            None => mask::positions(b, t, past, None, device)?,
        };
        let mut h = self.embed_tokens.forward(ids)?;
        let (cos, sin) = self.rope.cos_sin(&positions, h.kind())?;
        let full = mask::attend(b, t, past, padding, None, device)?;
        let mut windowed = None;
        for (i, layer) in self.layers.iter().enumerate() {
            let mask = match self.config.windows[i] {
                None => &full,
                Some(w) => windowed.get_or_insert(mask::attend(b, t, past, padding, Some(w), device)?),
            };
            let residual = h.shallow_clone();
            let x = layer.input_layernorm.forward(&h)?;
            let cache_slot = cache.as_deref_mut().map(|c| (c, i));
            let attn = layer.self_attn.forward(&x, &cos, &sin, mask, cache_slot, &self.config, train)?;
            h = residual.f_add(&attn)?;
            let residual = h.shallow_clone();
            let x = layer.post_attention_layernorm.forward(&h)?;
            h = residual.f_add(&layer.mlp.forward(&x)?)?;
        }
        self.norm.forward(&h)
    }

    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(hidden.f_linear(&self.lm_head, None::<&Tensor>)?)
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.layers.len())
    }

    pub fn dtype(&self) -> Kind {
        self.embed_tokens.weight.kind()
    }
}
