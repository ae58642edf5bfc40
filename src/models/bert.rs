//! BERT encoders (Devlin et al., 2019), `BertModel` as in transformers' modeling_bert.py, which
//! covers MiniLM: word + position + token-type embeddings with LayerNorm, post-norm encoder
//! layers, and the tanh pooler over [CLS] when the checkpoint has one. Mean and CLS pooling of
//! the last hidden state are offered beside it.

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

use super::config::HfConfig;
use super::layers::{Embedding, LayerNorm, Linear};
use super::weights::Weights;

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
}

impl BertConfig {
    pub fn parse(cfg: &HfConfig) -> Result<BertConfig> {
        cfg.require_one_of("position_embedding_type", &["absolute"], "absolute")?;
        cfg.require_one_of("hidden_act", &["gelu", "relu", "gelu_new"], "gelu")?;
        if cfg.bool_or("is_decoder", false)? || cfg.bool_or("add_cross_attention", false)? {
            bail!("decoder BERT configurations are not supported");
        }
        let hidden_size = cfg.int_or("hidden_size", 768)?;
        let num_heads = cfg.int_or("num_attention_heads", 12)?;
        if num_heads <= 0 || hidden_size % num_heads != 0 {
            bail!("hidden_size ({hidden_size}) must be a multiple of num_attention_heads ({num_heads})");
        }
        Ok(BertConfig {
            vocab_size: cfg.int_or("vocab_size", 30522)?,
            hidden_size,
            num_layers: cfg.int_or("num_hidden_layers", 12)?,
            num_heads,
            intermediate_size: cfg.int_or("intermediate_size", 3072)?,
            max_position_embeddings: cfg.int_or("max_position_embeddings", 512)?,
            type_vocab_size: cfg.int_or("type_vocab_size", 2)?,
            eps: cfg.float_or("layer_norm_eps", 1e-12)?,
            activation: cfg.str_or("hidden_act", "gelu")?.to_string(),
            attention_dropout: cfg.float_or("attention_probs_dropout_prob", 0.1)?,
            hidden_dropout: cfg.float_or("hidden_dropout_prob", 0.1)?,
        })
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

pub struct Bert {
    pub config: BertConfig,
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    token_type_embeddings: Embedding,
    embeddings_norm: LayerNorm,
    layers: Vec<Layer>,
    pooler: Option<Linear>,
}

impl Bert {
    pub fn load(w: &mut Weights, config: BertConfig) -> Result<Bert> {
        let c = &config;
        // BertModel checkpoints have bare names; task models wrap the trunk as "bert.".
        let p = if w.has("bert.embeddings.word_embeddings.weight") { "bert." } else { "" };
        let h = c.hidden_size;
        let e = format!("{p}embeddings");
        let word_embeddings = Embedding::load(w, &format!("{e}.word_embeddings"), c.vocab_size, h)?;
        let position_embeddings = Embedding::load(w, &format!("{e}.position_embeddings"), c.max_position_embeddings, h)?;
        let token_type_embeddings = Embedding::load(w, &format!("{e}.token_type_embeddings"), c.type_vocab_size, h)?;
        let embeddings_norm = LayerNorm::load(w, &format!("{e}.LayerNorm"), h, c.eps)?;
        let mut layers = Vec::new();
        for i in 0..c.num_layers {
            let l = format!("{p}encoder.layer.{i}");
            layers.push(Layer {
                query: Linear::load(w, &format!("{l}.attention.self.query"), h, h, true)?,
                key: Linear::load(w, &format!("{l}.attention.self.key"), h, h, true)?,
                value: Linear::load(w, &format!("{l}.attention.self.value"), h, h, true)?,
                attention_out: Linear::load(w, &format!("{l}.attention.output.dense"), h, h, true)?,
                attention_norm: LayerNorm::load(w, &format!("{l}.attention.output.LayerNorm"), h, c.eps)?,
                intermediate: Linear::load(w, &format!("{l}.intermediate.dense"), h, c.intermediate_size, true)?,
                output: Linear::load(w, &format!("{l}.output.dense"), c.intermediate_size, h, true)?,
                output_norm: LayerNorm::load(w, &format!("{l}.output.LayerNorm"), h, c.eps)?,
            });
        }
        let pooler = if w.is_fresh() || w.has(&format!("{p}pooler.dense.weight")) {
            Some(Linear::load(w, &format!("{p}pooler.dense"), h, h, true)?)
        } else {
            None
        };
        Ok(Bert { config, word_embeddings, position_embeddings, token_type_embeddings, embeddings_norm, layers, pooler })
    }

    pub fn ignorable(&self, name: &str) -> bool {
        name.ends_with("embeddings.position_ids")
    }

    fn act(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self.config.activation.as_str() {
            "relu" => x.f_relu()?,
            "gelu_new" => x.f_gelu("tanh")?,
            _ => x.f_gelu("none")?,
        })
    }

    /// The last hidden state (B, T, hidden) and the pooler output (B, hidden) if there is a pooler.
    pub fn forward(&self, ids: &Tensor, attention_mask: Option<&Tensor>, token_type_ids: Option<&Tensor>, position_ids: Option<&Tensor>, train: bool) -> Result<(Tensor, Option<Tensor>)> {
        let size = ids.size();
        if size.len() != 2 {
            bail!("input_ids must be (batch, seq), got shape {size:?}");
        }
        let (b, t) = (size[0], size[1]);
        let c = &self.config;
        if t > c.max_position_embeddings {
            bail!("sequence of {t} tokens exceeds max_position_embeddings ({})", c.max_position_embeddings);
        }
        let device = ids.device();
        let positions = match position_ids {
            Some(p) => p.shallow_clone(),
            None => super::mask::positions(b, t, 0, None, device)?,
        };
        let types = match token_type_ids {
            Some(tt) => tt.shallow_clone(),
            None => Tensor::f_zeros([b, t], (Kind::Int64, device))?,
        };
        let emb = self.word_embeddings.forward(ids)?.f_add(&self.token_type_embeddings.forward(&types)?)?.f_add(&self.position_embeddings.forward(&positions)?)?;
        let mut h = self.embeddings_norm.forward(&emb)?.f_dropout(c.hidden_dropout, train)?;
        let mask = match attention_mask {
            Some(m) if m.size() != [b, t] => bail!("attention_mask has shape {:?}, expected [{b}, {t}]", m.size()),
            Some(m) => Some(m.f_ne(0)?.f_view([b, 1, 1, t])?),
            None => None,
        };
        let hd = c.hidden_size / c.num_heads;
        let dropout = if train { c.attention_dropout } else { 0.0 };
        let heads = |x: Tensor| -> Result<Tensor> { Ok(x.f_view([b, t, c.num_heads, hd])?.f_transpose(1, 2)?) };
        for layer in &self.layers {
            let q = heads(layer.query.forward(&h)?)?;
            let k = heads(layer.key.forward(&h)?)?;
            let v = heads(layer.value.forward(&h)?)?;
            let ctx = Tensor::f_scaled_dot_product_attention(&q, &k, &v, mask.as_ref(), dropout, false, Some((hd as f64).powf(-0.5)), false)?;
            let ctx = ctx.f_transpose(1, 2)?.f_reshape([b, t, c.hidden_size])?;
            let attended = layer.attention_out.forward(&ctx)?.f_dropout(c.hidden_dropout, train)?;
            h = layer.attention_norm.forward(&attended.f_add(&h)?)?;
            let inner = self.act(&layer.intermediate.forward(&h)?)?;
            h = layer.output_norm.forward(&layer.output.forward(&inner)?.f_dropout(c.hidden_dropout, train)?.f_add(&h)?)?;
        }
        let pooled = match &self.pooler {
            Some(p) => Some(p.forward(&h.f_select(1, 0)?)?.f_tanh()?),
            None => None,
        };
        Ok((h, pooled))
    }
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
