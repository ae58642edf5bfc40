//! Several methods under one adapter name, as AdapterHub's `ConfigUnion`: AdapterHub's prefix
//! tuning (peft/hub_prefix.rs), a bottleneck adapter (peft/bottleneck.rs) and LoRA on the
//! attention matrices (peft/hub_lora.rs), each optional. UniPELT (Mao et al. 2022) is all three
//! behind learned gates; MAM (He et al. 2021) is prefix tuning with a parallel adapter;
//! `mt.peft.union` builds any other combination.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Map, Value};
use tch::Tensor;

use super::bottleneck::BnConfig;
use super::hub_lora::{HubLora, HubLoraConfig};
use super::hub_prefix::{KvShape, LayerPrefix, PrefixPool, PrefixTuningConfig};
use super::inject::{adapter_kind, check_name, freeze_base, settle};
use super::modular::{self, BuiltBottleneck};
use super::{linear, linear_mut, set_slots_active, Adapter, Method};
use crate::models::model::{Family, Model};
use crate::nn::attach::{PrefixPoint, PrefixPoolPoint};
use crate::nn::module::Module;

/// The parts of a union; at least one is present.
#[derive(Clone, Debug, PartialEq)]
pub struct UnionConfig {
    pub prefix_tuning: Option<PrefixTuningConfig>,
    pub bottleneck: Option<BnConfig>,
    pub lora: Option<HubLoraConfig>,
}

pub const PRESETS: &[&str] = &["unipelt", "mam", "prefix_tuning", "prefix_tuning_flat"];
const PARTS: &[&str] = &["prefix_tuning", "bottleneck", "lora"];

impl UnionConfig {
    /// AdapterHub's presets: `unipelt` (gated prefix tuning of 10 tokens, gated seq_bn with
    /// reduction factor 16, gated LoRA r = 8, alpha = 2), `mam` (prefix tuning with a
    /// bottleneck of 800, par_bn), `prefix_tuning` and `prefix_tuning_flat`.
    pub fn preset(name: &str) -> Result<UnionConfig> {
        let none = UnionConfig { prefix_tuning: None, bottleneck: None, lora: None };
        Ok(match name {
            "unipelt" => UnionConfig {
                prefix_tuning: Some(PrefixTuningConfig { prefix_length: 10, use_gating: true, ..Default::default() }),
                bottleneck: Some(BnConfig { use_gating: true, ..BnConfig::preset("seq_bn")? }),
                lora: Some(HubLoraConfig { r: 8, alpha: 2.0, use_gating: true, ..Default::default() }),
            },
            "mam" => UnionConfig { prefix_tuning: Some(PrefixTuningConfig { bottleneck_size: 800, ..Default::default() }), bottleneck: Some(BnConfig::preset("par_bn")?), lora: None },
            "prefix_tuning" => UnionConfig { prefix_tuning: Some(PrefixTuningConfig::default()), ..none },
            "prefix_tuning_flat" => UnionConfig { prefix_tuning: Some(PrefixTuningConfig { flat: true, ..Default::default() }), ..none },
            other => bail!("unknown union config '{other}' (known: {})", PRESETS.join(", ")),
        })
    }

    /// From a recipe's options: `config` (a preset, or none to start empty) and per part a
    /// table of options over the preset's (a bottleneck table may name its own `config`), or
    /// false to leave the part out.
    pub fn from_options(mut options: Map<String, Value>) -> Result<UnionConfig> {
        let mut c = match options.remove("config") {
            None | Some(Value::Null) => UnionConfig { prefix_tuning: None, bottleneck: None, lora: None },
            Some(Value::String(s)) => UnionConfig::preset(&s)?,
            Some(other) => bail!("config must be a preset name ({}), got {other}", PRESETS.join(", ")),
        };
        if let Some(unknown) = options.keys().find(|k| !PARTS.contains(&k.as_str())) {
            bail!("unknown option '{unknown}' for a union (options: config, name, {})", PARTS.join(", "));
        }
        for (part, value) in options {
            let table = match value {
                Value::Bool(false) => None,
                Value::Bool(true) => Some(Map::new()),
                Value::Object(m) => Some(m),
                other => bail!("{part} must be a table of options or false, got {other}"),
            };
            match part.as_str() {
                "prefix_tuning" => c.prefix_tuning = table.map(|t| c.prefix_tuning.take().unwrap_or_default().with_options(&t)).transpose().context("prefix_tuning")?,
                "lora" => c.lora = table.map(|t| c.lora.take().unwrap_or_default().with_options(&t)).transpose().context("lora")?,
                _ => {
                    c.bottleneck = match table {
                        None => None,
                        Some(t) if t.contains_key("config") => Some(BnConfig::from_options(t).context("bottleneck")?),
                        Some(t) => Some(c.bottleneck.take().map_or_else(|| BnConfig::preset("seq_bn"), Ok)?.with_options(&t).context("bottleneck")?),
                    }
                }
            }
        }
        c.check()?;
        Ok(c)
    }

    fn check(&self) -> Result<()> {
        if self.prefix_tuning.is_none() && self.bottleneck.is_none() && self.lora.is_none() {
            bail!("the union has no part: give config = \"unipelt\" or \"mam\", or prefix_tuning, bottleneck or lora options");
        }
        if self.bottleneck.as_ref().is_some_and(|b| b.inv_adapter.is_some()) {
            bail!("a union's bottleneck cannot be invertible (inv_adapter); add that adapter on its own");
        }
        Ok(())
    }

    /// From AdapterHub's config object: a "union" of configs, or one prefix tuning or LoRA config.
    pub fn from_adapterhub(config: &Map<String, Value>) -> Result<UnionConfig> {
        let parts: Vec<Map<String, Value>> = match config.get("architecture").and_then(|v| v.as_str()) {
            Some("union") => config
                .get("configs")
                .and_then(|v| v.as_array())
                .context("a union config needs a list of configs")?
                .iter()
                .map(|c| c.as_object().cloned().ok_or_else(|| anyhow!("a union's configs must be objects, got {c}")))
                .collect::<Result<_>>()?,
            _ => vec![config.clone()],
        };
        let mut c = UnionConfig { prefix_tuning: None, bottleneck: None, lora: None };
        for part in parts {
            let arch = part.get("architecture").and_then(|v| v.as_str()).unwrap_or("bottleneck");
            let twice = || anyhow!("the union holds two {arch} configs; moontune builds one of each");
            match arch {
                "prefix_tuning" if c.prefix_tuning.is_none() => c.prefix_tuning = Some(PrefixTuningConfig::from_adapterhub(&part)?),
                "lora" if c.lora.is_none() => c.lora = Some(HubLoraConfig::from_adapterhub(&part)?),
                "bottleneck" if c.bottleneck.is_none() => c.bottleneck = Some(BnConfig::from_adapterhub(&part)?),
                "prefix_tuning" | "lora" | "bottleneck" => return Err(twice()),
                other => bail!("the adapter is a '{other}' adapter, which moontune does not read from AdapterHub's files (it reads bottleneck, prefix_tuning, lora and their unions)"),
            }
        }
        c.check()?;
        Ok(c)
    }

    /// The config as AdapterHub writes it: one part alone, else a union (prefix tuning,
    /// bottleneck, LoRA, in UniPELT's order).
    pub fn to_adapterhub(&self) -> Value {
        let mut parts: Vec<Value> = Vec::new();
        if let Some(p) = &self.prefix_tuning {
            parts.push(p.to_adapterhub());
        }
        if let Some(b) = &self.bottleneck {
            parts.push(b.to_adapterhub());
        }
        if let Some(l) = &self.lora {
            parts.push(l.to_adapterhub());
        }
        if parts.len() == 1 {
            parts.remove(0)
        } else {
            json!({ "architecture": "union", "configs": parts })
        }
    }

    /// Which parts it has, for summaries ("prefix+bottleneck+lora").
    pub fn parts_text(&self) -> String {
        let mut out = Vec::new();
        if self.prefix_tuning.is_some() {
            out.push("prefix");
        }
        if self.bottleneck.is_some() {
            out.push("bottleneck");
        }
        if self.lora.is_some() {
            out.push("lora");
        }
        out.join("+")
    }

    pub fn gated(&self) -> bool {
        self.prefix_tuning.as_ref().is_some_and(|p| p.use_gating) || self.bottleneck.as_ref().is_some_and(|b| b.use_gating) || self.lora.as_ref().is_some_and(|l| l.use_gating)
    }
}

/// An attention layer: its number, tree path, query/key/value projections (one fused name, or
/// three) and its prefix point.
pub struct AttentionAt<'a> {
    pub layer: i64,
    pub path: String,
    pub projections: &'static [&'static str],
    pub prefix: &'a mut PrefixPoint,
}

/// Where a model's attention sits: each layer's attention path, the names of its query, key and
/// value projections (one fused name, or three) and the base model's prefix pool path.
pub fn attention_layout(model: &Model) -> (Vec<String>, &'static [&'static str], String) {
    const LLAMA: &[&str] = &["q_proj", "k_proj", "v_proj"];
    const BERT: &[&str] = &["query", "key", "value"];
    let (n, stem, attention, projections, pool): (usize, &str, &str, &'static [&'static str], &str) = match &model.family {
        Family::Llama(m) => (m.model.layers.items.len(), "model.layers", "self_attn", LLAMA, "model."),
        Family::LlamaClassifier(m) => (m.model.layers.items.len(), "model.layers", "self_attn", LLAMA, "model."),
        Family::Gpt2(m) => (m.transformer.h.items.len(), "transformer.h", "attn", &["c_attn"], "transformer."),
        Family::Bert(m) => (m.encoder.layer.items.len(), "encoder.layer", "attention.self", BERT, ""),
        Family::BertClassifier(m) => (m.bert.encoder.layer.items.len(), "bert.encoder.layer", "attention.self", BERT, "bert."),
    };
    ((0..n).map(|i| format!("{stem}.{i}.{attention}")).collect(), projections, format!("{pool}prefix_tuning"))
}

/// Every attention layer, and the base model's prefix pool point with its path.
pub fn attention_points(model: &mut Model) -> (Vec<AttentionAt<'_>>, (String, &mut PrefixPoolPoint)) {
    let (paths, projections, pool_path) = attention_layout(model);
    let (points, pool): (Vec<&mut PrefixPoint>, &mut PrefixPoolPoint) = match &mut model.family {
        Family::Llama(m) => (m.model.layers.items.iter_mut().map(|l| &mut l.self_attn.prefix_gates).collect(), &mut m.model.prefix_tuning),
        Family::LlamaClassifier(m) => (m.model.layers.items.iter_mut().map(|l| &mut l.self_attn.prefix_gates).collect(), &mut m.model.prefix_tuning),
        Family::Gpt2(m) => (m.transformer.h.items.iter_mut().map(|l| &mut l.attn.prefix_gates).collect(), &mut m.transformer.prefix_tuning),
        Family::Bert(m) => (m.encoder.layer.items.iter_mut().map(|l| &mut l.attention.self_attention.prefix_gates).collect(), &mut m.prefix_tuning),
        Family::BertClassifier(m) => (m.bert.encoder.layer.items.iter_mut().map(|l| &mut l.attention.self_attention.prefix_gates).collect(), &mut m.bert.prefix_tuning),
    };
    let at = points.into_iter().zip(paths).enumerate().map(|(i, (prefix, path))| AttentionAt { layer: i as i64, path, projections, prefix }).collect();
    (at, (pool_path, pool))
}

/// Key/value heads and head size of the model's attention.
fn kv_heads(model: &Model) -> (i64, i64) {
    match &model.family {
        Family::Llama(m) => (m.config.num_kv_heads, m.config.head_dim),
        Family::LlamaClassifier(m) => (m.config.num_kv_heads, m.config.head_dim),
        Family::Gpt2(m) => (m.config.n_head, m.config.n_embd / m.config.n_head),
        Family::Bert(m) => (m.config.num_heads, m.config.hidden_size / m.config.num_heads),
        Family::BertClassifier(m) => (m.bert.config.num_heads, m.bert.config.hidden_size / m.bert.config.num_heads),
    }
}

/// What a union adds, built before the model changes.
struct Built {
    bottleneck: Option<BuiltBottleneck>,
    pool: Option<(String, PrefixPool)>,
    layer_prefixes: Vec<(String, LayerPrefix)>,
    loras: Vec<(String, HubLora)>,
}

impl Built {
    fn modules(&self) -> Vec<(&str, &dyn Module)> {
        let mut out: Vec<(&str, &dyn Module)> = Vec::new();
        if let Some(b) = &self.bottleneck {
            out.extend(b.modules());
        }
        out.extend(self.pool.iter().map(|(p, m)| (p.as_str(), m as &dyn Module)));
        out.extend(self.layer_prefixes.iter().map(|(p, m)| (p.as_str(), m as &dyn Module)));
        out.extend(self.loras.iter().map(|(p, m)| (p.as_str(), m as &dyn Module)));
        out
    }
}

/// Adds union adapter `name` (weights from `tensors`, by tree name, when given). Everything is
/// built and checked before the model changes; as the other methods, the first adapter becomes
/// active and trainable, later ones are added inactive and frozen.
pub fn add_union(model: &mut Model, name: &str, config: UnionConfig, tensors: Option<&BTreeMap<String, Tensor>>, trainable: bool) -> Result<()> {
    check_name(model, name)?;
    modular::check_adapter_name(name)?;
    config.check()?;
    let hidden = model.hidden_size();
    let (kind, device) = (adapter_kind(model.dtype()), model.device());
    let layers = attention_points(model).0.len() as i64;
    let leave_outs = [config.prefix_tuning.as_ref().map(|p| &p.leave_out), config.lora.as_ref().map(|l| &l.leave_out)];
    if let Some(l) = leave_outs.iter().flatten().flat_map(|v| v.iter()).find(|l| **l < 0 || **l >= layers) {
        bail!("leave_out names layer {l}, but the model has layers 0 to {}", layers - 1);
    }
    let bottleneck = config.bottleneck.as_ref().map(|c| modular::build_bottleneck(model, name, c)).transpose()?;
    let mut built = Built { bottleneck, pool: None, layer_prefixes: Vec::new(), loras: Vec::new() };
    let (attention, (pool_path, _)) = attention_points(model);
    let sites: Vec<(i64, String, &'static [&'static str])> = attention.iter().map(|a| (a.layer, a.path.clone(), a.projections)).collect();
    if let Some(p) = &config.prefix_tuning {
        let with_prefix: Vec<i64> = sites.iter().map(|s| s.0).filter(|l| !p.leave_out.contains(l)).collect();
        for (index, layer) in with_prefix.iter().enumerate() {
            let path = format!("{}.prefix_gates", sites[*layer as usize].1);
            built.layer_prefixes.push((path, LayerPrefix::new(name, index, p, hidden, kind, device)?));
        }
        let (heads, head_dim) = kv_heads(model);
        built.pool = Some((pool_path, PrefixPool::new(name, p, hidden, KvShape { layers: with_prefix.len() as i64, heads, head_dim }, kind, device)?));
    }
    if let Some(l) = &config.lora {
        let wanted = |m: &str| l.attn_matrices.iter().any(|x| x == m);
        for (layer, path, projections) in sites.iter().filter(|s| !l.leave_out.contains(&s.0)) {
            if let [fused] = projections {
                let thirds: Vec<i64> = ["q", "k", "v"].iter().enumerate().filter(|(_, m)| wanted(m)).map(|(i, _)| i as i64).collect();
                let at = format!("{path}.{fused}");
                built.loras.push((format!("{at}.adapters"), HubLora::new(name, linear(model, &at)?, l, thirds, kind, device)?));
            } else {
                for (m, projection) in ["q", "k", "v"].iter().zip(projections.iter()) {
                    if wanted(m) {
                        let at = format!("{path}.{projection}");
                        built.loras.push((format!("{at}.adapters"), HubLora::new(name, linear(model, &at)?, l, Vec::new(), kind, device).with_context(|| format!("LoRA on {at} (layer {layer})"))?));
                    }
                }
            }
        }
    }
    if let Some(tensors) = tensors {
        modular::check_built(model, name, &built.modules(), tensors)?;
    }
    let activate = model.adapters.active.is_empty() && model.adapters.setup.is_none();
    let mut paths = Vec::new();
    if let Some(b) = built.bottleneck {
        paths.extend(modular::attach_bottleneck(model, name, b)?);
    }
    let (attention, (pool_path, pool_point)) = attention_points(model);
    if let Some((_, pool)) = built.pool {
        pool_point.attach(name, Box::new(pool))?;
        paths.push(pool_path);
    }
    let mut by_path: BTreeMap<String, LayerPrefix> = built.layer_prefixes.into_iter().collect();
    for a in attention {
        let path = format!("{}.prefix_gates", a.path);
        if let Some(p) = by_path.remove(&path) {
            a.prefix.attach(name, Box::new(p))?;
            paths.push(path);
        }
    }
    for (path, lora) in built.loras {
        let layer = path.strip_suffix(".adapters").unwrap_or(&path).to_string();
        linear_mut(model, &layer)?.adapters.attach(name, Box::new(lora))?;
        paths.push(layer);
    }
    freeze_base(model)?;
    model.adapters.adapters.push(Adapter { name: name.to_string(), method: Method::Union(config), layers: paths, saved: Vec::new(), biases: Vec::new() });
    set_slots_active(model, &model.adapters.active.clone());
    if let Some(tensors) = tensors {
        modular::load_into(model, name, tensors)?;
    }
    settle(model, name, activate, trainable)
}

/// Detaches union adapter `name` from every point (the registry entry is the caller's).
pub fn detach_union(model: &mut Model, name: &str, layers: &[String]) -> Result<()> {
    modular::detach_bottleneck(model, name)?;
    let (attention, (_, pool)) = attention_points(model);
    if pool.slots().iter().any(|s| s.name == name) {
        pool.detach(name)?;
    }
    for a in attention {
        if a.prefix.slots().iter().any(|s| s.name == name) {
            a.prefix.detach(name)?;
        }
    }
    for layer in layers {
        if let Ok(l) = linear_mut(model, layer) {
            if l.adapters.slots().iter().any(|s| s.name == name) {
                l.adapters.detach(name)?;
            }
        }
    }
    Ok(())
}
