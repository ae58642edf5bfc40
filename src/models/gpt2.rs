//! GPT-2 (Radford et al., 2019), `GPT2LMHeadModel` as in transformers' modeling_gpt2.py: learned
//! positions, pre-norm blocks with LayerNorm, fused q/k/v in a `Conv1D` (weights stored
//! (in, out)), a GELU MLP, and a head tied to the token embedding.

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

use super::cache::KvCache;
use super::config::HfConfig;
use super::layers::{Conv1D, Embedding, LayerNorm};
use super::mask;
use super::weights::Weights;

#[derive(Clone, Debug)]
pub struct Gpt2Config {
    pub vocab_size: i64,
    pub n_positions: i64,
    pub n_embd: i64,
    pub n_layer: i64,
    pub n_head: i64,
    pub n_inner: i64,
    pub eps: f64,
    pub activation: String,
    pub attn_pdrop: f64,
    pub resid_pdrop: f64,
    pub embd_pdrop: f64,
    pub scale_attn_weights: bool,
}

impl Gpt2Config {
    pub fn parse(cfg: &HfConfig) -> Result<Gpt2Config> {
        for key in ["scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "add_cross_attention"] {
            if cfg.bool_or(key, false)? {
                bail!("config key '{key}' = true is not supported");
            }
        }
        cfg.require_one_of("activation_function", &["gelu_new", "gelu", "gelu_pytorch_tanh", "relu"], "gelu_new")?;
        let n_embd = cfg.int_or("n_embd", 768)?;
        let n_head = cfg.int_or("n_head", 12)?;
        if n_head <= 0 || n_embd % n_head != 0 {
            bail!("n_embd ({n_embd}) must be a multiple of n_head ({n_head})");
        }
        Ok(Gpt2Config {
            vocab_size: cfg.int_or("vocab_size", 50257)?,
            n_positions: cfg.int_or("n_positions", 1024)?,
            n_embd,
            n_layer: cfg.int_or("n_layer", 12)?,
            n_head,
            n_inner: cfg.opt_int("n_inner")?.unwrap_or(4 * n_embd),
            eps: cfg.float_or("layer_norm_epsilon", 1e-5)?,
            activation: cfg.str_or("activation_function", "gelu_new")?.to_string(),
            attn_pdrop: cfg.float_or("attn_pdrop", 0.1)?,
            resid_pdrop: cfg.float_or("resid_pdrop", 0.1)?,
            embd_pdrop: cfg.float_or("embd_pdrop", 0.1)?,
            scale_attn_weights: cfg.bool_or("scale_attn_weights", true)?,
        })
    }
}

struct Block {
    ln_1: LayerNorm,
    c_attn: Conv1D,
    attn_proj: Conv1D,
    ln_2: LayerNorm,
    c_fc: Conv1D,
    mlp_proj: Conv1D,
}

pub struct Gpt2 {
    pub config: Gpt2Config,
    prefix: String,
    wte: Embedding,
    wpe: Embedding,
    h: Vec<Block>,
    ln_f: LayerNorm,
}

impl Gpt2 {
    pub fn load(w: &mut Weights, config: Gpt2Config) -> Result<Gpt2> {
        let c = &config;
        // Checkpoints saved by GPT2LMHeadModel prefix the trunk with "transformer."; the
        // original OpenAI conversions do not.
        let prefix = if w.is_fresh() || w.has("transformer.wte.weight") { "transformer." } else { "" }.to_string();
        let p = |s: String| format!("{prefix}{s}");
        let wte = Embedding::load(w, &p("wte".into()), c.vocab_size, c.n_embd)?;
        let wpe = Embedding::load(w, &p("wpe".into()), c.n_positions, c.n_embd)?;
        let mut h = Vec::new();
        for i in 0..c.n_layer {
            let b = p(format!("h.{i}"));
            h.push(Block {
                ln_1: LayerNorm::load(w, &format!("{b}.ln_1"), c.n_embd, c.eps)?,
                c_attn: Conv1D::load(w, &format!("{b}.attn.c_attn"), c.n_embd, 3 * c.n_embd)?,
                attn_proj: Conv1D::load(w, &format!("{b}.attn.c_proj"), c.n_embd, c.n_embd)?,
                ln_2: LayerNorm::load(w, &format!("{b}.ln_2"), c.n_embd, c.eps)?,
                c_fc: Conv1D::load(w, &format!("{b}.mlp.c_fc"), c.n_embd, c.n_inner)?,
                mlp_proj: Conv1D::load(w, &format!("{b}.mlp.c_proj"), c.n_inner, c.n_embd)?,
            });
        }
        let ln_f = LayerNorm::load(w, &p("ln_f".into()), c.n_embd, c.eps)?;
        Ok(Gpt2 { config, prefix, wte, wpe, h, ln_f })
    }

    /// The tied head, old causal-mask buffers and masked_bias may be stored without being
    /// parameters.
    pub fn ignorable(&self, name: &str) -> bool {
        name == "lm_head.weight" || name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias") || name.starts_with(&format!("{}h.", self.prefix)) && name.ends_with("masked_bias")
    }

    fn act(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self.config.activation.as_str() {
            "relu" => x.f_relu()?,
            "gelu" => x.f_gelu("none")?,
            _ => x.f_gelu("tanh")?,
        })
    }

    pub fn hidden(&self, ids: &Tensor, padding: Option<&Tensor>, positions: Option<&Tensor>, mut cache: Option<&mut KvCache>, train: bool) -> Result<Tensor> {
        let size = ids.size();
        if size.len() != 2 {
            bail!("input_ids must be (batch, seq), got shape {size:?}");
        }
        let (b, t) = (size[0], size[1]);
        let c = &self.config;
        let past = cache.as_ref().map(|c| c.len()).unwrap_or(0);
        if past + t > c.n_positions {
            bail!("sequence of {} positions exceeds n_positions ({})", past + t, c.n_positions);
        }
        let device = ids.device();
        let positions = match positions {
            Some(p) => p.shallow_clone(),
            None => mask::positions(b, t, past, None, device)?,
        };
        let mut h = self.wte.forward(ids)?.f_add(&self.wpe.forward(&positions)?)?.f_dropout(c.embd_pdrop, train)?;
        let attend = mask::attend(b, t, past, padding, None, device)?;
        let (attn_mask, is_causal) = attend.sdpa_args();
        let hd = c.n_embd / c.n_head;
        let scale = if c.scale_attn_weights { (hd as f64).powf(-0.5) } else { 1.0 };
        let dropout = if train { c.attn_pdrop } else { 0.0 };
        for (i, block) in self.h.iter().enumerate() {
            let qkv = block.c_attn.forward(&block.ln_1.forward(&h)?)?;
            let parts = qkv.f_split(c.n_embd, 2)?;
            let heads = |x: &Tensor| -> Result<Tensor> { Ok(x.f_view([b, t, c.n_head, hd])?.f_transpose(1, 2)?) };
            let q = heads(&parts[0])?;
            let (mut k, mut v) = (heads(&parts[1])?, heads(&parts[2])?);
            if let Some(cache) = cache.as_deref_mut() {
                (k, v) = cache.update(i, k, v)?;
            }
            let out = Tensor::f_scaled_dot_product_attention(&q, &k, &v, attn_mask, dropout, is_causal, Some(scale), false)?;
            let out = block.attn_proj.forward(&out.f_transpose(1, 2)?.f_reshape([b, t, c.n_embd])?)?;
            h = h.f_add(&out.f_dropout(c.resid_pdrop, train)?)?;
            let m = block.mlp_proj.forward(&self.act(&block.c_fc.forward(&block.ln_2.forward(&h)?)?)?)?;
            h = h.f_add(&m.f_dropout(c.resid_pdrop, train)?)?;
        }
        self.ln_f.forward(&h)
    }

    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(hidden.f_linear(&self.wte.weight, None::<&Tensor>)?)
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.h.len())
    }

    pub fn dtype(&self) -> Kind {
        self.wte.weight.kind()
    }
}
