//! Adding an adapter to a model: a plan (which layers, which shapes) made from the config
//! alone, checked against a file's tensors when loading, then the layers built and attached.
//! Everything that can fail does so before the model is touched, so a refused adapter leaves
//! the model as it was.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use tch::{Kind, Tensor};

use super::config::{BiasMode, LoraInit};
use super::ia3::Ia3Layer;
use super::prompt::{PrefixTuning, PromptTuning};
use super::lora::{LoraLayer, LoraSpec};
use super::saved::SavedModule;
use super::targets::under_modules_to_save;
use super::{linear, linear_mut, output_head, set_adapter, train_adapter, Adapter, Method};
use crate::models::model::Model;
use crate::nn::attach::LinearAdapter;
use crate::nn::linear::Layout;
use crate::nn::module::{self, Owner};
use crate::tensor::dtype::is_floating;

/// What goes on one layer.
pub enum SiteKind {
    Lora { r: i64, scaling: f64 },
    Ia3 { feedforward: bool },
    /// A method defined in Lua.
    Custom,
    Saved,
}

pub struct Site {
    pub layer: String,
    pub kind: SiteKind,
}

/// The dtype adapters are kept in for a base of `kind`: float32 for half-precision bases (as
/// PEFT's `autocast_adapter_dtype`), else the base's.
pub fn adapter_kind(kind: Kind) -> Kind {
    match kind {
        Kind::Half | Kind::BFloat16 => Kind::Float,
        k => k,
    }
}

/// The layers and shapes `method` puts on `model`.
pub fn plan(model: &Model, method: &Method) -> Result<Vec<Site>> {
    let Some(selection) = method.selection() else { return Ok(Vec::new()) };
    let mut sites = Vec::new();
    for layer in selection.linear_layers(model.root(), output_head(model))? {
        let kind = match method {
            Method::Lora(c) => {
                let (r, alpha) = c.rank_alpha(&layer)?;
                SiteKind::Lora { r, scaling: c.scaling(r, alpha) }
            }
            Method::Ia3(c) => SiteKind::Ia3 { feedforward: c.is_feedforward(&layer) },
            Method::Custom(_) => SiteKind::Custom,
            Method::Prompt(_) | Method::Prefix(_) | Method::Bottleneck(_) | Method::Union(_) => bail!("internal: this method has no linear layers"),
        };
        sites.push(Site { layer, kind });
    }
    if !selection.modules_to_save.is_empty() {
        let mut found = Vec::new();
        for (name, m) in module::named_modules(model.root()) {
            if name.is_empty() || name.contains(".adapters") {
                continue;
            }
            let last_is_saved = selection.modules_to_save.iter().any(|s| name == *s || name.ends_with(&format!(".{s}")));
            if !last_is_saved {
                continue;
            }
            if m.as_any().downcast_ref::<crate::nn::linear::Linear>().is_none() {
                bail!("modules_to_save: '{name}' is a {}; only linear layers (an output head, a classifier) can be kept as trainable copies", m.class_name());
            }
            found.push(name);
        }
        let missing: Vec<&String> = selection.modules_to_save.iter().filter(|s| !found.iter().any(|f| f == *s || f.ends_with(&format!(".{s}")))).collect();
        if !missing.is_empty() && (!selection.saved_optional || found.is_empty()) {
            bail!("modules_to_save: the model has no module '{}'", missing[0]);
        }
        sites.extend(found.into_iter().map(|layer| Site { layer, kind: SiteKind::Saved }));
    }
    Ok(sites)
}

/// The base biases that train with the adapter.
fn biases(model: &Model, method: &Method, sites: &[Site]) -> Vec<String> {
    let Method::Lora(c) = method else { return Vec::new() };
    let all: Vec<String> = model.named_parameters().into_iter().filter(|p| p.owner == Owner::Base && p.name.ends_with(".bias")).map(|p| p.name).collect();
    match c.bias {
        BiasMode::None => Vec::new(),
        BiasMode::All => all.into_iter().filter(|b| !under_modules_to_save(&c.selection.modules_to_save, b)).collect(),
        BiasMode::LoraOnly => sites.iter().filter(|s| matches!(s.kind, SiteKind::Lora { .. })).map(|s| format!("{}.bias", s.layer)).filter(|b| all.contains(b)).collect(),
    }
}

/// Checks a file's tensors (keys without `base_model.model.`) against the layers built for them.
pub(super) fn check_file(expected: &BTreeMap<String, Vec<i64>>, tensors: &BTreeMap<String, Tensor>, arch: &str) -> Result<()> {
    for (key, t) in tensors {
        match expected.get(key) {
            None => {
                let module = key.rsplit_once('.').map(|(m, _)| m).unwrap_or(key);
                bail!("adapter tensor 'base_model.model.{key}' does not fit this {arch} model: its config puts nothing there (is '{module}' a layer of this model, and is the adapter for this architecture?)");
            }
            Some(shape) if *shape != t.size() => bail!("adapter tensor 'base_model.model.{key}' has shape {:?}; this model needs {shape:?} there (an adapter for another model size?)", t.size()),
            Some(_) => {}
        }
    }
    if let Some(missing) = expected.keys().find(|k| !tensors.contains_key(*k)) {
        bail!("the adapter file has no tensor 'base_model.model.{missing}', which its config calls for");
    }
    Ok(())
}

/// Whether `name` can name an adapter.
pub(super) fn check_name(model: &Model, name: &str) -> Result<()> {
    if name.is_empty() || name.contains('.') || name.contains(char::is_whitespace) {
        bail!("'{name}' cannot name an adapter: use a non-empty name without dots or spaces");
    }
    if model.adapters.adapters.iter().any(|a| a.name == name) {
        bail!("the model already has an adapter named '{name}'; delete it first or choose another name");
    }
    Ok(())
}

/// Adds adapter `name`: from `tensors` (an adapter file's, keys without `base_model.model.`)
/// when given, else freshly initialised. The base model is frozen. The first adapter on a model
/// becomes active (trainable unless `trainable` is false); later ones are added inactive and
/// frozen until `set_adapter`, as PEFT's `add_adapter` and `load_adapter`.
pub fn add(model: &mut Model, name: &str, method: Method, tensors: Option<&BTreeMap<String, Tensor>>, trainable: bool) -> Result<()> {
    let method = match method {
        Method::Bottleneck(c) => return super::modular::add_bottleneck(model, name, c, tensors, trainable),
        Method::Union(c) => return super::union::add_union(model, name, c, tensors, trainable),
        other => other,
    };
    check_name(model, name)?;
    if method.is_prompt() {
        return add_prompt(model, name, method, tensors, trainable);
    }
    let to_save = method.selection().map(|s| s.modules_to_save.clone()).unwrap_or_default();
    if let Some(other) = model.adapters.adapters.iter().find(|a| a.saved.iter().any(|s| to_save.iter().any(|m| s == m || s.ends_with(&format!(".{m}"))))) {
        bail!("adapter '{}' already keeps a copy of a module in modules_to_save; two adapters cannot both replace one layer", other.name);
    }
    let sites = plan(model, &method)?;
    let biases = biases(model, &method, &sites);
    // Build every layer, and check a file against them, before changing anything.
    let mut built: Vec<(String, Box<dyn LinearAdapter>, Option<Tensor>)> = Vec::new();
    for s in &sites {
        let base = linear(model, &s.layer)?;
        let layer_kind = match base.layout {
            Layout::Quantized { kind, .. } => adapter_kind(kind),
            Layout::FourBit => adapter_kind(model.dtype()),
            _ => adapter_kind(base.weight.kind()),
        };
        let (adapter, residual): (Box<dyn LinearAdapter>, Option<Tensor>) = match (&method, &s.kind) {
            (Method::Lora(c), SiteKind::Lora { r, scaling }) => {
                // Loading replaces A and B: a PiSSA/OLoRA base residual is still made, as PEFT does.
                let init = if tensors.is_some() && matches!(c.init, LoraInit::Default | LoraInit::Gaussian | LoraInit::Random) { LoraInit::Default } else { c.init };
                let spec = LoraSpec { r: *r, scaling: *scaling, dropout: c.dropout, dora: c.use_dora, init, kind: layer_kind };
                let (layer, residual) = LoraLayer::new(name, base, &spec).with_context(|| format!("LoRA on '{}'", s.layer))?;
                (Box::new(layer), residual)
            }
            (Method::Ia3(c), SiteKind::Ia3 { feedforward }) => (Box::new(Ia3Layer::new(name, base, *feedforward, c.init_ones, layer_kind)?), None),
            (Method::Custom(c), SiteKind::Custom) => (c.method.build(name, base, &c.options, layer_kind).with_context(|| format!("{} on '{}'", c.method.name(), s.layer))?, None),
            (_, SiteKind::Saved) => (Box::new(SavedModule::new(name, base)?), None),
            _ => bail!("internal: a site of another method"),
        };
        built.push((s.layer.clone(), adapter, residual));
    }
    if let Some(tensors) = tensors {
        let mut expected = BTreeMap::new();
        for (layer, adapter, _) in &built {
            for (pname, t) in adapter.own_parameters() {
                expected.insert(format!("{layer}.{pname}"), t.size());
            }
        }
        let adapted: Vec<String> = sites.iter().filter(|s| !matches!(s.kind, SiteKind::Saved)).map(|s| s.layer.clone()).collect();
        let params = model.named_parameters();
        for b in &biases {
            let p = params.iter().find(|p| &p.name == b).context("bias vanished")?;
            expected.insert(bias_key(&adapted, b), p.tensor.size());
        }
        check_file(&expected, tensors, &model.architecture)?;
    }
    // Attach.
    let activate = model.adapters.active.is_empty();
    for (layer, adapter, residual) in built {
        let l = linear_mut(model, &layer)?;
        if let Some(w) = residual {
            l.set_weight_out_in(&w)?;
        }
        l.adapters.attach(name, adapter)?;
        if let Some(slot) = l.adapters.slots_mut().iter_mut().find(|s| s.name == name) {
            slot.active = activate;
        }
    }
    freeze_base(model)?;
    let layers = sites.iter().filter(|s| !matches!(s.kind, SiteKind::Saved)).map(|s| s.layer.clone()).collect();
    let saved = sites.iter().filter(|s| matches!(s.kind, SiteKind::Saved)).map(|s| s.layer.clone()).collect();
    model.adapters.adapters.push(Adapter { name: name.to_string(), method, layers, saved, biases });
    if let Some(tensors) = tensors {
        load_tensors(model, name, tensors)?;
    }
    settle(model, name, activate, trainable)
}

/// Freezes the base model (its biases train with an adapter as its bias mode says, set later).
pub(super) fn freeze_base(model: &Model) -> Result<()> {
    for p in model.named_parameters() {
        if p.owner == Owner::Base && is_floating(p.tensor.kind()) {
            let mut t = p.tensor;
            let _ = t.f_requires_grad_(false)?;
        }
    }
    Ok(())
}

/// Activates a new adapter if it is the first, and sets what trains.
pub(super) fn settle(model: &mut Model, name: &str, activate: bool, trainable: bool) -> Result<()> {
    if activate {
        set_adapter(model, &[name.to_string()])?;
        if !trainable {
            train_adapter(model, &[])?;
        }
    } else {
        let active = model.adapters.active.clone();
        train_adapter(model, &active)?;
    }
    Ok(())
}

/// The file key of a prompt or prefix adapter's table.
pub const PROMPT_KEY: &str = "prompt_embeddings";

/// Adds a prompt or prefix tuning adapter at the model's `prompt_encoder` point.
fn add_prompt(model: &mut Model, name: &str, method: Method, tensors: Option<&BTreeMap<String, Tensor>>, trainable: bool) -> Result<()> {
    let (layers, kv_heads, head_dim) = model.kv_layout()?;
    let hidden = model.hidden_size();
    let (shape, columns) = match &method {
        Method::Prompt(c) => (&c.shape, hidden),
        Method::Prefix(c) => (&c.shape, layers * 2 * kv_heads * head_dim),
        _ => bail!("internal: not a prompt method"),
    };
    let token_dim = if matches!(method, Method::Prompt(_)) { hidden } else { kv_heads * head_dim };
    for (field, given, here) in [("token_dim", shape.token_dim, token_dim), ("num_layers", shape.num_layers, layers), ("num_attention_heads", shape.num_attention_heads, if matches!(method, Method::Prompt(_)) { super::files::query_heads(model) } else { kv_heads })] {
        if let Some(g) = given {
            if g != here {
                bail!("the adapter's {field} is {g}; this {} model has {here} (an adapter for another model?)", model.architecture);
            }
        }
    }
    let n = match &method {
        Method::Prompt(c) => c.num_virtual_tokens,
        Method::Prefix(c) => c.num_virtual_tokens,
        _ => 0,
    };
    if let Some(tensors) = tensors {
        let keys: Vec<&String> = tensors.keys().collect();
        match tensors.get(PROMPT_KEY) {
            Some(t) if keys.len() == 1 && t.size() == [n, columns] => {}
            Some(t) if keys.len() == 1 => bail!("adapter tensor '{PROMPT_KEY}' has shape {:?}; this model needs [{n}, {columns}]", t.size()),
            _ => bail!("a prompt or prefix adapter file holds one tensor, '{PROMPT_KEY}'; this one holds {}", keys.iter().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(", ")),
        }
    }
    let kind = adapter_kind(model.dtype());
    let device = model.device();
    let adapter: Box<dyn crate::nn::attach::PromptAdapter> = match &method {
        Method::Prompt(c) => {
            let init = match (&c.init_ids, tensors) {
                (Some(ids), None) => Some(text_embeddings(model, ids, n)?),
                _ => None,
            };
            Box::new(PromptTuning::new(name, n, hidden, init, kind, device)?)
        }
        Method::Prefix(c) => Box::new(PrefixTuning::new(name, n, (layers, kv_heads, head_dim), c.projection.map(|h| (kv_heads * head_dim, h)), kind, device)?),
        _ => bail!("internal: not a prompt method"),
    };
    let activate = model.adapters.active.is_empty();
    let point = super::prompt_point(model).context("no prompt point")?;
    point.attach(name, adapter)?;
    if let Some(slot) = point.slots_mut().iter_mut().find(|s| s.name == name) {
        slot.active = activate;
    }
    freeze_base(model)?;
    model.adapters.adapters.push(Adapter { name: name.to_string(), method, layers: Vec::new(), saved: Vec::new(), biases: Vec::new() });
    if let Some(t) = tensors.and_then(|t| t.get(PROMPT_KEY)) {
        let target = model.named_parameters().into_iter().find(|p| p.name == format!("prompt_encoder.{name}.embedding.weight")).context("the new adapter's table is missing")?;
        let _guard = tch::no_grad_guard();
        target.tensor.shallow_clone().f_copy_(t)?;
    }
    settle(model, name, activate, trainable)
}


/// Prompt tuning's text initialisation: the embeddings of `ids`, repeated or cut to `n` rows.
pub fn text_embeddings(model: &Model, ids: &[i64], n: i64) -> Result<Tensor> {
    if ids.is_empty() {
        bail!("init_text has no tokens");
    }
    let picked: Vec<i64> = ids.iter().cycle().take(n as usize).copied().collect();
    let ids = Tensor::f_from_slice(&picked)?.f_to_device(model.device())?.f_unsqueeze(0)?;
    let _guard = tch::no_grad_guard();
    Ok(model.embed_ids(&model.forward_ctx(), &ids)?.f_squeeze_dim(0)?)
}

/// The file key of a base bias trained with an adapter: PEFT names the bias of a layer it wraps
/// `<layer>.base_layer.bias`, any other by its own name.
pub fn bias_key(adapted_layers: &[String], bias: &str) -> String {
    match bias.strip_suffix(".bias") {
        Some(layer) if adapted_layers.iter().any(|l| l == layer) => format!("{layer}.base_layer.bias"),
        _ => bias.to_string(),
    }
}

/// The tree name of adapter `name`'s parameter for a file key (`layer.lora_A.weight` →
/// `layer.adapters.name.lora_A.weight`), or the key itself for a base bias.
pub fn tree_name(model: &Model, name: &str, key: &str) -> Result<String> {
    let adapter = model.adapters.get(name)?;
    if let Some(b) = adapter.biases.iter().find(|b| bias_key(&adapter.layers, b) == key) {
        return Ok(b.clone());
    }
    for layer in adapter.layers.iter().chain(&adapter.saved) {
        if let Some(rest) = key.strip_prefix(&format!("{layer}.")) {
            return Ok(format!("{layer}.adapters.{name}.{rest}"));
        }
    }
    bail!("'{key}' is not a tensor of adapter '{name}'")
}

/// The file key of a parameter of adapter `name` (its tree name without `.adapters.<name>`).
pub fn file_key(tree_name: &str, name: &str) -> Option<String> {
    let marker = format!(".adapters.{name}.");
    tree_name.find(&marker).map(|i| format!("{}.{}", &tree_name[..i], &tree_name[i + marker.len()..]))
}

/// Copies file tensors into adapter `name`'s parameters (and base biases).
fn load_tensors(model: &mut Model, name: &str, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
    let by_name: BTreeMap<String, Tensor> = model.named_parameters().into_iter().map(|p| (p.name, p.tensor)).collect();
    let _guard = tch::no_grad_guard();
    for (key, src) in tensors {
        let target = by_name.get(&tree_name(model, name, key)?).with_context(|| format!("no parameter for '{key}'"))?;
        let mut target = target.shallow_clone();
        target.f_copy_(src).with_context(|| format!("loading '{key}'"))?;
    }
    Ok(())
}

/// The module holding adapter parameters is a `dyn Module`; list its owner's parameters.
pub fn adapter_parameters(model: &Model, name: &str) -> Vec<crate::nn::module::NamedParam> {
    model.named_parameters().into_iter().filter(|p| p.owner == Owner::Adapter(name.to_string())).collect()
}
