//! GPT-2 (Radford et al., 2019), `GPT2LMHeadModel` as in transformers' modeling_gpt2.py: learned
//! positions, pre-norm blocks with LayerNorm, fused q/k/v in a `Conv1D` (weights stored
//! (in, out)), a GELU MLP, and a head tied to the token embedding.
//!
//! The tree is transformers': `transformer.{wte, wpe, h.N.{ln_1, attn.{c_attn, c_proj}, ln_2,
//! mlp.{c_fc, c_proj}}, ln_f}` and `lm_head`; checkpoints without the `transformer.` prefix
//! (OpenAI's conversions) load under these names. Each block has residual points after
//! attention and after the MLP, and the model an invertible point.

use anyhow::{bail, Result};
use tch::Tensor;

use super::cache::KvCache;
use super::config::{HfConfig, MAX_LAYERS, MAX_WIDTH};
use super::input::Tokens;
use super::mask::{self, Attend};
use crate::module_children;
use crate::nn::checkpoint;
use crate::nn::attach::{InvertiblePoint, PrefixPoint, PrefixPoolPoint, PromptPoint, ResidualPoint};
use crate::nn::embedding::Embedding;
use crate::nn::hooks::Ctx;
use crate::nn::linear::{Layout, Linear};
use crate::nn::module::{Module, ModuleList};
use crate::nn::norm::LayerNorm;
use crate::nn::weights::Weights;

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
        let n_embd = cfg.size_or("n_embd", 768, MAX_WIDTH)?;
        let n_head = cfg.size_or("n_head", 12, MAX_LAYERS)?;
        if n_embd % n_head != 0 {
            bail!("n_embd ({n_embd}) must be a multiple of n_head ({n_head})");
        }
        Ok(Gpt2Config {
            vocab_size: cfg.size_or("vocab_size", 50257, MAX_WIDTH)?,
            n_positions: cfg.size_or("n_positions", 1024, MAX_WIDTH)?,
            n_embd,
            n_layer: cfg.size_or("n_layer", 12, MAX_LAYERS)?,
            n_head,
            n_inner: cfg.opt_size("n_inner", MAX_WIDTH)?.unwrap_or(4 * n_embd),
            eps: cfg.float_or("layer_norm_epsilon", 1e-5)?,
            activation: cfg.str_or("activation_function", "gelu_new")?.to_string(),
            attn_pdrop: cfg.float_or("attn_pdrop", 0.1)?,
            resid_pdrop: cfg.float_or("resid_pdrop", 0.1)?,
            embd_pdrop: cfg.float_or("embd_pdrop", 0.1)?,
            scale_attn_weights: cfg.bool_or("scale_attn_weights", true)?,
        })
    }
}

/// The activation of the MLP (`activation_function`).
fn activation(name: &str, x: &Tensor) -> Result<Tensor> {
    Ok(match name {
        "relu" => x.f_relu()?,
        "gelu" => x.f_gelu("none")?,
        _ => x.f_gelu("tanh")?,
    })
}

pub struct Gpt2Attention {
    name: String,
    /// q, k and v in one (in, out) projection.
    pub c_attn: Linear,
    pub c_proj: Linear,
    /// AdapterHub prefix tuning's share of this layer, before the keys and values.
    pub prefix_gates: PrefixPoint,
    n_head: i64,
    scale: f64,
    attn_pdrop: f64,
    resid_pdrop: f64,
}

impl Gpt2Attention {
    /// x (B, T, n_embd) → (B, T, n_embd), after dropout, appending keys and values to `cache`.
    fn forward(&self, ctx: &Ctx, x: &Tensor, attend: &Attend, cache: Option<(&mut KvCache, usize)>) -> Result<Tensor> {
        let (b, t, e) = (x.size()[0], x.size()[1], x.size()[2]);
        let hd = e / self.n_head;
        let qkv = self.c_attn.forward(ctx, x)?;
        let parts = qkv.f_split(e, 2)?;
        let heads = |x: &Tensor| -> Result<Tensor> { Ok(x.f_view([b, t, self.n_head, hd])?.f_transpose(1, 2)?) };
        let q = heads(&parts[0])?;
        let (mut k, mut v) = (heads(&parts[1])?, heads(&parts[2])?);
        if let Some((cache, layer)) = cache {
            (k, v) = cache.update(layer, k, v)?;
        }
        let (k_added, v_added, added) = self.prefix_gates.apply(ctx, x, k, v)?;
        (k, v) = (k_added, v_added);
        let with_prefix;
        let attend = if added > 0 {
            with_prefix = attend.with_prefix(added, b, t, x.device())?;
            &with_prefix
        } else {
            attend
        };
        let (mask, is_causal) = attend.sdpa_args();
        let dropout = if ctx.training { self.attn_pdrop } else { 0.0 };
        let out = Tensor::f_scaled_dot_product_attention(&q, &k, &v, mask, dropout, is_causal, Some(self.scale), false)?;
        let out = self.c_proj.forward(ctx, &out.f_transpose(1, 2)?.f_reshape([b, t, e])?)?.f_dropout(self.resid_pdrop, ctx.training)?;
        ctx.output(&self.name, x, out)
    }
}

impl Module for Gpt2Attention {
    fn class_name(&self) -> &'static str {
        "GPT2Attention"
    }
    module_children!("c_attn" => c_attn, "c_proj" => c_proj, "prefix_gates" => prefix_gates.dict);
}

pub struct Gpt2Mlp {
    name: String,
    pub c_fc: Linear,
    pub c_proj: Linear,
    activation: String,
    resid_pdrop: f64,
}

impl Gpt2Mlp {
    /// x (…, n_embd) → (…, n_embd), after dropout.
    pub fn forward(&self, ctx: &Ctx, x: &Tensor) -> Result<Tensor> {
        let inner = activation(&self.activation, &self.c_fc.forward(ctx, x)?)?;
        let out = self.c_proj.forward(ctx, &inner)?.f_dropout(self.resid_pdrop, ctx.training)?;
        ctx.output(&self.name, x, out)
    }
}

impl Module for Gpt2Mlp {
    fn class_name(&self) -> &'static str {
        "GPT2MLP"
    }
    fn forward_tensor(&self, ctx: &Ctx, x: &Tensor) -> Option<Result<Tensor>> {
        Some(self.forward(ctx, x))
    }
    module_children!("c_fc" => c_fc, "c_proj" => c_proj);
}

pub struct Gpt2Block {
    name: String,
    pub ln_1: LayerNorm,
    pub attn: Gpt2Attention,
    pub ln_2: LayerNorm,
    pub mlp: Gpt2Mlp,
    pub attention_adapters: ResidualPoint,
    pub output_adapters: ResidualPoint,
}

impl Gpt2Block {
    fn load(w: &mut Weights, name: &str, c: &Gpt2Config) -> Result<Gpt2Block> {
        let e = c.n_embd;
        let hd = e / c.n_head;
        Ok(Gpt2Block {
            name: name.to_string(),
            ln_1: LayerNorm::load(w, &format!("{name}.ln_1"), e, c.eps)?,
            attn: Gpt2Attention {
                name: format!("{name}.attn"),
                c_attn: Linear::load(w, &format!("{name}.attn.c_attn"), e, 3 * e, true, Layout::InOut)?,
                c_proj: Linear::load(w, &format!("{name}.attn.c_proj"), e, e, true, Layout::InOut)?,
                prefix_gates: PrefixPoint::default(),
                n_head: c.n_head,
                scale: if c.scale_attn_weights { (hd as f64).powf(-0.5) } else { 1.0 },
                attn_pdrop: c.attn_pdrop,
                resid_pdrop: c.resid_pdrop,
            },
            ln_2: LayerNorm::load(w, &format!("{name}.ln_2"), e, c.eps)?,
            mlp: Gpt2Mlp {
                name: format!("{name}.mlp"),
                c_fc: Linear::load(w, &format!("{name}.mlp.c_fc"), e, c.n_inner, true, Layout::InOut)?,
                c_proj: Linear::load(w, &format!("{name}.mlp.c_proj"), c.n_inner, e, true, Layout::InOut)?,
                activation: c.activation.clone(),
                resid_pdrop: c.resid_pdrop,
            },
            attention_adapters: ResidualPoint::default(),
            output_adapters: ResidualPoint::default(),
        })
    }

    /// Pre-norm block: h (B, T, n_embd) → (B, T, n_embd).
    fn forward(&self, ctx: &Ctx, h: &Tensor, attend: &Attend, cache: Option<(&mut KvCache, usize)>) -> Result<Tensor> {
        let x = self.ln_1.forward(ctx, h)?;
        let attn = self.attn.forward(ctx, &x, attend, cache)?;
        let h2 = self.attention_adapters.forward(ctx, attn, h, None)?;
        let x = self.ln_2.forward(ctx, &h2)?;
        let m = self.mlp.forward(ctx, &x)?;
        let out = self.output_adapters.forward(ctx, m, &h2, None)?;
        ctx.output(&self.name, h, out)
    }
}

impl Module for Gpt2Block {
    fn class_name(&self) -> &'static str {
        "GPT2Block"
    }
    module_children!(
        "ln_1" => ln_1,
        "attn" => attn,
        "ln_2" => ln_2,
        "mlp" => mlp,
        "attention_adapters" => attention_adapters.adapters.dict,
        "attention_fusion" => attention_adapters.fusion.dict,
        "output_adapters" => output_adapters.adapters.dict,
        "output_fusion" => output_adapters.fusion.dict,
    );
}

/// The decoder without its head (transformers' `GPT2Model`).
pub struct Gpt2Model {
    pub wte: Embedding,
    pub wpe: Embedding,
    pub h: ModuleList<Gpt2Block>,
    pub ln_f: LayerNorm,
    pub invertible_adapters: InvertiblePoint,
    /// AdapterHub prefix tuning's pools, run once per forward.
    pub prefix_tuning: PrefixPoolPoint,
    n_positions: i64,
    embd_pdrop: f64,
}

impl Gpt2Model {
    fn forward(&self, ctx: &Ctx, tokens: &Tokens, padding: Option<&Tensor>, positions: Option<&Tensor>, mut cache: Option<&mut KvCache>) -> Result<Tensor> {
        let (b, t) = tokens.batch_and_length()?;
        if let Some(c) = &cache {
            c.check_layers(self.h.items.len())?;
        }
        let past = cache.as_ref().map(|c| c.len()).unwrap_or(0);
        if past + t > self.n_positions {
            bail!("sequence of {} positions exceeds n_positions ({})", past + t, self.n_positions);
        }
        let device = tokens.device();
        let positions_given = positions;
        let positions = match positions {
            Some(p) => p.shallow_clone(),
            None => mask::positions(b, t, past, None, device)?,
        };
        let tokens = match tokens {
            Tokens::Ids(ids) => self.wte.forward(ctx, ids)?,
            Tokens::Embeds(e) => e.shallow_clone(),
        };
        let h = tokens.f_add(&self.wpe.forward(ctx, &positions)?)?.f_dropout(self.embd_pdrop, ctx.training)?;
        let mut h = if self.invertible_adapters.is_empty() { h } else { self.invertible_adapters.after_embeddings(ctx, h)? };
        let prefixes = self.prefix_tuning.states(ctx, b)?;
        let ctx = &ctx.with_prefixes(prefixes.as_ref());
        let attend = mask::attend(b, t, past, padding, None, positions_given, device)?;
        for (i, block) in self.h.items.iter().enumerate() {
            h = match (ctx.checkpoint, cache.as_deref_mut()) {
                (Some(reach), None) => {
                    let attend = attend.shallow_clone();
                    checkpoint::layer(reach, ctx, block, &block.name, &h, move |b: &Gpt2Block, ctx, x| b.forward(ctx, x, &attend, None))?
                }
                (_, cache) => block.forward(ctx, &h, &attend, cache.map(|c| (c, i)))?,
            };
        }
        self.ln_f.forward(ctx, &h)
    }
}

impl Module for Gpt2Model {
    fn class_name(&self) -> &'static str {
        "GPT2Model"
    }
    module_children!("wte" => wte, "wpe" => wpe, "h" => h, "ln_f" => ln_f, "invertible_adapters" => invertible_adapters.dict, "prefix_tuning" => prefix_tuning.dict);
}

/// `GPT2LMHeadModel`.
pub struct Gpt2LMHeadModel {
    pub config: Gpt2Config,
    pub transformer: Gpt2Model,
    pub lm_head: Linear,
    pub prompt_encoder: PromptPoint,
}

impl Gpt2LMHeadModel {
    pub fn load(w: &mut Weights, config: Gpt2Config) -> Result<Gpt2LMHeadModel> {
        let c = &config;
        // OpenAI's conversions have no "transformer." prefix: load them under the usual names.
        if !w.is_fresh() && !w.has("transformer.wte.weight") && w.has("wte.weight") {
            w.rename_prefix("", "transformer.", |name| !name.starts_with("lm_head."));
        }
        let wte = Embedding::load(w, "transformer.wte", c.vocab_size, c.n_embd, None)?;
        let wpe = Embedding::load(w, "transformer.wpe", c.n_positions, c.n_embd, None)?;
        let h = (0..c.n_layer).map(|i| Gpt2Block::load(w, &format!("transformer.h.{i}"), c)).collect::<Result<Vec<_>>>()?;
        let ln_f = LayerNorm::load(w, "transformer.ln_f", c.n_embd, c.eps)?;
        let lm_head = Linear::tied("lm_head", &wte.weight);
        let transformer = Gpt2Model {
            wte,
            wpe,
            h: ModuleList { items: h },
            ln_f,
            invertible_adapters: InvertiblePoint::default(),
            prefix_tuning: PrefixPoolPoint::default(),
            n_positions: c.n_positions,
            embd_pdrop: c.embd_pdrop,
        };
        Ok(Gpt2LMHeadModel { config, transformer, lm_head, prompt_encoder: PromptPoint::default() })
    }

    /// The tied head, old causal-mask buffers and masked_bias may be stored without being
    /// parameters.
    pub fn ignorable(&self, name: &str) -> bool {
        name == "lm_head.weight" || name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias")
    }

    pub fn hidden(&self, ctx: &Ctx, tokens: &Tokens, padding: Option<&Tensor>, positions: Option<&Tensor>, cache: Option<&mut KvCache>) -> Result<Tensor> {
        self.transformer.forward(ctx, tokens, padding, positions, cache)
    }

    pub fn logits(&self, ctx: &Ctx, hidden: &Tensor) -> Result<Tensor> {
        let invertible = &self.transformer.invertible_adapters;
        let h = if invertible.is_empty() { hidden.shallow_clone() } else { invertible.before_head(ctx, hidden.shallow_clone())? };
        self.lm_head.forward(ctx, &h)
    }

    pub fn num_layers(&self) -> usize {
        self.transformer.h.items.len()
    }
}

impl Module for Gpt2LMHeadModel {
    fn class_name(&self) -> &'static str {
        "GPT2LMHeadModel"
    }
    module_children!("transformer" => transformer, "lm_head" => lm_head, "prompt_encoder" => prompt_encoder.dict);
}
