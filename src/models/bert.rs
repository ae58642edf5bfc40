//! BERT encoders (Devlin et al., 2019), `BertModel` as in transformers' modeling_bert.py, which
//! covers MiniLM: word + position + token-type embeddings with LayerNorm, post-norm encoder
//! layers, and the tanh pooler over [CLS] when the checkpoint has one. Mean and CLS pooling of
//! the last hidden state are offered beside it.
//!
//! The tree is transformers': `embeddings.{word,position,token_type}_embeddings`,
//! `embeddings.LayerNorm`, `encoder.layer.N.{attention.{self.{query,key,value}, output.{dense,
//! LayerNorm}}, intermediate.dense, output.{dense, LayerNorm}}`, `pooler.dense`; checkpoints of
//! task models (`bert.` prefix) load under these names. The two residual points of each layer
//! are AdapterHub's `attention.output.adapters` and `output.adapters`.

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

use super::config::{HfConfig, MAX_LAYERS, MAX_WIDTH};
use super::input::Tokens;
use crate::module_children;
use crate::nn::checkpoint;
use crate::nn::attach::{InvertiblePoint, PrefixPoint, PrefixPoolPoint, ResidualPoint};
use crate::nn::embedding::Embedding;
use crate::nn::hooks::Ctx;
use crate::nn::linear::{Layout, Linear};
use crate::nn::module::{Module, ModuleList};
use crate::nn::norm::LayerNorm;
use crate::nn::weights::Weights;

#[derive(Clone, Debug)]
pub struct BertConfig {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub num_layers: i64,
    pub num_heads: i64,
    pub intermediate_size: i64,
    pub max_position_embeddings: i64,
    pub type_vocab_size: i64,
    pub eps: f64,
    pub activation: String,
    pub attention_dropout: f64,
    pub hidden_dropout: f64,
    /// The word embedding row that gets no gradient (transformers' `padding_idx`, default 0).
    pub pad_token_id: i64,
}

impl BertConfig {
    pub fn parse(cfg: &HfConfig) -> Result<BertConfig> {
        cfg.require_one_of("position_embedding_type", &["absolute"], "absolute")?;
        cfg.require_one_of("hidden_act", &["gelu", "relu", "gelu_new"], "gelu")?;
        if cfg.bool_or("is_decoder", false)? || cfg.bool_or("add_cross_attention", false)? {
            bail!("decoder BERT configurations are not supported");
        }
        let hidden_size = cfg.size_or("hidden_size", 768, MAX_WIDTH)?;
        let num_heads = cfg.size_or("num_attention_heads", 12, MAX_LAYERS)?;
        if hidden_size % num_heads != 0 {
            bail!("hidden_size ({hidden_size}) must be a multiple of num_attention_heads ({num_heads})");
        }
        Ok(BertConfig {
            vocab_size: cfg.size_or("vocab_size", 30522, MAX_WIDTH)?,
            hidden_size,
            num_layers: cfg.size_or("num_hidden_layers", 12, MAX_LAYERS)?,
            num_heads,
            intermediate_size: cfg.size_or("intermediate_size", 3072, MAX_WIDTH)?,
            max_position_embeddings: cfg.size_or("max_position_embeddings", 512, MAX_WIDTH)?,
            type_vocab_size: cfg.size_or("type_vocab_size", 2, MAX_WIDTH)?,
            eps: cfg.float_or("layer_norm_eps", 1e-12)?,
            activation: cfg.str_or("hidden_act", "gelu")?.to_string(),
            attention_dropout: cfg.float_or("attention_probs_dropout_prob", 0.1)?,
            hidden_dropout: cfg.float_or("hidden_dropout_prob", 0.1)?,
            pad_token_id: cfg.opt_token_id("pad_token_id", cfg.size_or("vocab_size", 30522, MAX_WIDTH)?)?.unwrap_or(0),
        })
    }
}

/// The activation of the intermediate layer (`hidden_act`).
fn activation(name: &str, x: &Tensor) -> Result<Tensor> {
    Ok(match name {
        "relu" => x.f_relu()?,
        "gelu_new" => x.f_gelu("tanh")?,
        _ => x.f_gelu("none")?,
    })
}

pub struct BertEmbeddings {
    name: String,
    pub word_embeddings: Embedding,
    pub position_embeddings: Embedding,
    pub token_type_embeddings: Embedding,
    pub layer_norm: LayerNorm,
    dropout: f64,
}

impl BertEmbeddings {
    /// word (or given) + token type + position embeddings, normalised: (B, T, hidden).
    fn forward(&self, ctx: &Ctx, tokens: &Tokens, token_type_ids: &Tensor, positions: &Tensor) -> Result<Tensor> {
        let words = match tokens {
            Tokens::Ids(ids) => self.word_embeddings.forward(ctx, ids)?,
            Tokens::Embeds(e) => e.shallow_clone(),
        };
        let emb = words.f_add(&self.token_type_embeddings.forward(ctx, token_type_ids)?)?.f_add(&self.position_embeddings.forward(ctx, positions)?)?;
        let out = self.layer_norm.forward(ctx, &emb)?.f_dropout(self.dropout, ctx.training)?;
        ctx.output(&self.name, &words, out)
    }
}

impl Module for BertEmbeddings {
    fn class_name(&self) -> &'static str {
        "BertEmbeddings"
    }
    module_children!("word_embeddings" => word_embeddings, "position_embeddings" => position_embeddings, "token_type_embeddings" => token_type_embeddings, "LayerNorm" => layer_norm);
}

pub struct BertSelfAttention {
    name: String,
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    /// AdapterHub prefix tuning's share of this layer, before the keys and values.
    pub prefix_gates: PrefixPoint,
    num_heads: i64,
    dropout: f64,
}

impl BertSelfAttention {
    /// h (B, T, hidden) → context (B, T, hidden); `mask` (B, 1, 1, T) bool.
    fn forward(&self, ctx: &Ctx, h: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, t, e) = (h.size()[0], h.size()[1], h.size()[2]);
        let hd = e / self.num_heads;
        let heads = |x: Tensor| -> Result<Tensor> { Ok(x.f_view([b, t, self.num_heads, hd])?.f_transpose(1, 2)?) };
        let q = heads(self.query.forward(ctx, h)?)?;
        let k = heads(self.key.forward(ctx, h)?)?;
        let v = heads(self.value.forward(ctx, h)?)?;
        let (k, v, added) = self.prefix_gates.apply(ctx, h, k, v)?;
        let with_prefix = match mask {
            Some(m) if added > 0 => Some(Tensor::f_cat(&[Tensor::f_ones([b, 1, 1, added], (Kind::Bool, h.device()))?, m.shallow_clone()], -1)?),
            _ => None,
        };
        let mask = with_prefix.as_ref().or(mask);
        let dropout = if ctx.training { self.dropout } else { 0.0 };
        let out = Tensor::f_scaled_dot_product_attention(&q, &k, &v, mask, dropout, false, Some((hd as f64).powf(-0.5)), false)?;
        let out = out.f_transpose(1, 2)?.f_reshape([b, t, e])?;
        ctx.output(&self.name, h, out)
    }
}

impl Module for BertSelfAttention {
    fn class_name(&self) -> &'static str {
        "BertSelfAttention"
    }
    module_children!("query" => query, "key" => key, "value" => value, "prefix_gates" => prefix_gates.dict);
}

/// `dense`, dropout, then the residual add and `LayerNorm` through a residual point (BERT's
/// `BertSelfOutput` and `BertOutput` have this one shape).
pub struct BertResidualOutput {
    name: String,
    class: &'static str,
    pub dense: Linear,
    pub layer_norm: LayerNorm,
    pub adapters: ResidualPoint,
    dropout: f64,
}

impl BertResidualOutput {
    /// x → LayerNorm(dropout(dense(x)) + residual).
    fn forward(&self, ctx: &Ctx, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        let out = self.dense.forward(ctx, x)?.f_dropout(self.dropout, ctx.training)?;
        let out = self.adapters.forward(ctx, out, residual, Some(&self.layer_norm))?;
        ctx.output(&self.name, x, out)
    }
}

impl Module for BertResidualOutput {
    fn class_name(&self) -> &'static str {
        self.class
    }
    module_children!("dense" => dense, "LayerNorm" => layer_norm, "adapters" => adapters.adapters.dict, "adapter_fusion_layer" => adapters.fusion.dict);
}

pub struct BertAttention {
    pub self_attention: BertSelfAttention,
    pub output: BertResidualOutput,
}

impl Module for BertAttention {
    fn class_name(&self) -> &'static str {
        "BertAttention"
    }
    module_children!("self" => self_attention, "output" => output);
}

pub struct BertIntermediate {
    pub dense: Linear,
    activation: String,
}

impl Module for BertIntermediate {
    fn class_name(&self) -> &'static str {
        "BertIntermediate"
    }
    module_children!("dense" => dense);
}

pub struct BertLayer {
    name: String,
    pub attention: BertAttention,
    pub intermediate: BertIntermediate,
    pub output: BertResidualOutput,
}

impl BertLayer {
    fn load(w: &mut Weights, name: &str, c: &BertConfig) -> Result<BertLayer> {
        let h = c.hidden_size;
        let linear = |w: &mut Weights, sub: &str, i: i64, o: i64| Linear::load(w, &format!("{name}.{sub}"), i, o, true, Layout::OutIn);
        let residual_output = |w: &mut Weights, sub: &str, class: &'static str, i: i64| -> Result<BertResidualOutput> {
            Ok(BertResidualOutput {
                name: format!("{name}.{sub}"),
                class,
                dense: linear(w, &format!("{sub}.dense"), i, h)?,
                layer_norm: LayerNorm::load(w, &format!("{name}.{sub}.LayerNorm"), h, c.eps)?,
                adapters: ResidualPoint::default(),
                dropout: c.hidden_dropout,
            })
        };
        Ok(BertLayer {
            name: name.to_string(),
            attention: BertAttention {
                self_attention: BertSelfAttention {
                    name: format!("{name}.attention.self"),
                    query: linear(w, "attention.self.query", h, h)?,
                    key: linear(w, "attention.self.key", h, h)?,
                    value: linear(w, "attention.self.value", h, h)?,
                    prefix_gates: PrefixPoint::default(),
                    num_heads: c.num_heads,
                    dropout: c.attention_dropout,
                },
                output: residual_output(w, "attention.output", "BertSelfOutput", h)?,
            },
            intermediate: BertIntermediate { dense: linear(w, "intermediate.dense", h, c.intermediate_size)?, activation: c.activation.clone() },
            output: residual_output(w, "output", "BertOutput", c.intermediate_size)?,
        })
    }

    /// Post-norm layer: h (B, T, hidden) → (B, T, hidden).
    fn forward(&self, ctx: &Ctx, h: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let context = self.attention.self_attention.forward(ctx, h, mask)?;
        let h2 = self.attention.output.forward(ctx, &context, h)?;
        let inner = activation(&self.intermediate.activation, &self.intermediate.dense.forward(ctx, &h2)?)?;
        let out = self.output.forward(ctx, &inner, &h2)?;
        ctx.output(&self.name, h, out)
    }
}

impl Module for BertLayer {
    fn class_name(&self) -> &'static str {
        "BertLayer"
    }
    module_children!("attention" => attention, "intermediate" => intermediate, "output" => output);
}

pub struct BertEncoder {
    pub layer: ModuleList<BertLayer>,
}

impl Module for BertEncoder {
    fn class_name(&self) -> &'static str {
        "BertEncoder"
    }
    module_children!("layer" => layer);
}

pub struct BertPooler {
    pub dense: Linear,
}

impl Module for BertPooler {
    fn class_name(&self) -> &'static str {
        "BertPooler"
    }
    module_children!("dense" => dense);
}

/// `BertModel`.
pub struct BertModel {
    pub config: BertConfig,
    pub embeddings: BertEmbeddings,
    pub encoder: BertEncoder,
    pub pooler: Option<BertPooler>,
    pub invertible_adapters: InvertiblePoint,
    /// AdapterHub prefix tuning's pools, run once per forward.
    pub prefix_tuning: PrefixPoolPoint,
}

impl BertModel {
    /// Loads the trunk from tensors named `{prefix}embeddings…` (prefix "" for a `BertModel`,
    /// "bert." inside a task model, whose tree names its modules so).
    pub fn load(w: &mut Weights, config: BertConfig, prefix: &str) -> Result<BertModel> {
        let c = &config;
        // A task model's checkpoint loaded as a plain BertModel: its trunk is under "bert.".
        if prefix.is_empty() && w.has("bert.embeddings.word_embeddings.weight") {
            w.rename_prefix("bert.", "", |_| true);
        }
        let h = c.hidden_size;
        let embeddings = BertEmbeddings {
            name: format!("{prefix}embeddings"),
            word_embeddings: Embedding::load(w, &format!("{prefix}embeddings.word_embeddings"), c.vocab_size, h, Some(c.pad_token_id))?,
            position_embeddings: Embedding::load(w, &format!("{prefix}embeddings.position_embeddings"), c.max_position_embeddings, h, None)?,
            token_type_embeddings: Embedding::load(w, &format!("{prefix}embeddings.token_type_embeddings"), c.type_vocab_size, h, None)?,
            layer_norm: LayerNorm::load(w, &format!("{prefix}embeddings.LayerNorm"), h, c.eps)?,
            dropout: c.hidden_dropout,
        };
        let layers = (0..c.num_layers).map(|i| BertLayer::load(w, &format!("{prefix}encoder.layer.{i}"), c)).collect::<Result<Vec<_>>>()?;
        let pooler = if w.is_fresh() || w.has(&format!("{prefix}pooler.dense.weight")) {
            Some(BertPooler { dense: Linear::load(w, &format!("{prefix}pooler.dense"), h, h, true, Layout::OutIn)? })
        } else {
            None
        };
        Ok(BertModel { config, embeddings, encoder: BertEncoder { layer: ModuleList { items: layers } }, pooler, invertible_adapters: InvertiblePoint::default(), prefix_tuning: PrefixPoolPoint::default() })
    }

    pub fn ignorable(&self, name: &str) -> bool {
        name.ends_with("embeddings.position_ids")
    }

    /// The last hidden state (B, T, hidden) and the pooler output (B, hidden) if there is a pooler.
    pub fn forward(&self, ctx: &Ctx, tokens: &Tokens, attention_mask: Option<&Tensor>, token_type_ids: Option<&Tensor>, position_ids: Option<&Tensor>) -> Result<(Tensor, Option<Tensor>)> {
        let (b, t) = tokens.batch_and_length()?;
        let c = &self.config;
        if t > c.max_position_embeddings {
            bail!("sequence of {t} tokens exceeds max_position_embeddings ({})", c.max_position_embeddings);
        }
        let device = tokens.device();
        let positions = match position_ids {
            Some(p) => p.shallow_clone(),
            None => super::mask::positions(b, t, 0, None, device)?,
        };
        let types = match token_type_ids {
            Some(tt) => tt.shallow_clone(),
            None => Tensor::f_zeros([b, t], (Kind::Int64, device))?,
        };
        let h = self.embeddings.forward(ctx, tokens, &types, &positions)?;
        let mut h = if self.invertible_adapters.is_empty() { h } else { self.invertible_adapters.after_embeddings(ctx, h)? };
        let prefixes = self.prefix_tuning.states(ctx, b)?;
        let ctx = &ctx.with_prefixes(prefixes.as_ref());
        let mask = match attention_mask {
            Some(m) if m.size() != [b, t] => bail!("attention_mask has shape {:?}, expected [{b}, {t}]", m.size()),
            Some(m) => Some(m.f_ne(0)?.f_view([b, 1, 1, t])?),
            None => None,
        };
        for layer in &self.encoder.layer.items {
            h = match ctx.checkpoint {
                Some(reach) => {
                    let mask = mask.as_ref().map(|m| m.shallow_clone());
                    checkpoint::layer(reach, ctx, layer, &layer.name, &h, move |l: &BertLayer, ctx, x| l.forward(ctx, x, mask.as_ref()))?
                }
                None => layer.forward(ctx, &h, mask.as_ref())?,
            };
        }
        let pooled = match &self.pooler {
            Some(p) => Some(p.dense.forward(ctx, &h.f_select(1, 0)?)?.f_tanh()?),
            None => None,
        };
        Ok((h, pooled))
    }
}

impl Module for BertModel {
    fn class_name(&self) -> &'static str {
        "BertModel"
    }
    module_children!("embeddings" => embeddings, "encoder" => encoder, "pooler" => pooler, "invertible_adapters" => invertible_adapters.dict, "prefix_tuning" => prefix_tuning.dict);
}

/// Mean of the hidden states over real tokens (sentence-transformers' mean pooling).
pub fn mean_pool(hidden: &Tensor, attention_mask: Option<&Tensor>) -> Result<Tensor> {
    match attention_mask {
        None => Ok(hidden.f_mean_dim(1, false, None::<Kind>)?),
        Some(m) => {
            let m = m.f_to_kind(hidden.kind())?.f_unsqueeze(-1)?;
            let summed = hidden.f_mul(&m)?.f_sum_dim_intlist(1, false, None::<Kind>)?;
            let counts = m.f_sum_dim_intlist(1, false, None::<Kind>)?.f_clamp_min(1e-9)?;
            Ok(summed.f_div(&counts)?)
        }
    }
}
