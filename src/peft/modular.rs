//! Modular adapters on a model, as AdapterHub's model mixin: bottleneck adapters added at the
//! residual points of every layer (and, for invertible configs, after the embeddings), fusion
//! layers over several of them, the active composition (`set_active`), training a fusion
//! (`train_fusion`) and what fusions decided on the last forward (`fusion_weights`).

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};
use tch::Tensor;

use super::bottleneck::{BnConfig, Bottleneck, NiceCoupling};
use super::fusion::{Fusion, FusionConfig, FusionLayer};
use super::inject::{adapter_kind, check_file, check_name, freeze_base, settle};
use super::{set_slots_active, Adapter, Method};
use crate::models::model::{Family, Model};
use crate::nn::attach::{InvertiblePoint, ResidualPoint};
use crate::nn::compose::Setup;
use crate::nn::module::{self, Module, Owner};
use crate::tensor::dtype::is_floating;

/// Which residual point of a layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Location {
    /// After attention (AdapterHub's `mh_adapter`).
    Attention,
    /// After the feed-forward block (`output_adapter`).
    Output,
}

/// A residual point of the model: its layer, location, tree path and the point.
pub struct PointAt<'a> {
    pub layer: i64,
    pub location: Location,
    pub path: String,
    pub point: &'a mut ResidualPoint,
}

/// Every residual point, layer by layer (attention before output).
pub fn residual_points(model: &mut Model) -> Vec<PointAt<'_>> {
    let mut out = Vec::new();
    let mut push = |layer: usize, location: Location, path: String, p| {
        out.push(PointAt { layer: layer as i64, location, path, point: p });
    };
    match &mut model.family {
        Family::Llama(m) => llama_points(&mut m.model.layers.items, "model.layers", &mut push),
        Family::LlamaClassifier(m) => llama_points(&mut m.model.layers.items, "model.layers", &mut push),
        Family::Gpt2(m) => {
            for (i, l) in m.transformer.h.items.iter_mut().enumerate() {
                push(i, Location::Attention, format!("transformer.h.{i}.attention_adapters"), &mut l.attention_adapters);
                push(i, Location::Output, format!("transformer.h.{i}.output_adapters"), &mut l.output_adapters);
            }
        }
        Family::Bert(m) => bert_points(&mut m.encoder.layer.items, "encoder.layer", &mut push),
        Family::BertClassifier(m) => bert_points(&mut m.bert.encoder.layer.items, "bert.encoder.layer", &mut push),
    }
    out
}

type Push<'a, 'b> = dyn FnMut(usize, Location, String, &'a mut ResidualPoint) + 'b;

fn llama_points<'a>(layers: &'a mut [crate::models::llama::LlamaDecoderLayer], prefix: &str, push: &mut Push<'a, '_>) {
    for (i, l) in layers.iter_mut().enumerate() {
        push(i, Location::Attention, format!("{prefix}.{i}.attention_adapters"), &mut l.attention_adapters);
        push(i, Location::Output, format!("{prefix}.{i}.output_adapters"), &mut l.output_adapters);
    }
}

fn bert_points<'a>(layers: &'a mut [crate::models::bert::BertLayer], prefix: &str, push: &mut Push<'a, '_>) {
    for (i, l) in layers.iter_mut().enumerate() {
        push(i, Location::Attention, format!("{prefix}.{i}.attention.output.adapters"), &mut l.attention.output.adapters);
        push(i, Location::Output, format!("{prefix}.{i}.output.adapters"), &mut l.output.adapters);
    }
}

/// The invertible point after the embeddings and its path, where the model has one.
pub fn invertible_point(model: &mut Model) -> Option<(&'static str, &mut InvertiblePoint)> {
    match &mut model.family {
        Family::Llama(m) => Some(("model.invertible_adapters", &mut m.model.invertible_adapters)),
        Family::LlamaClassifier(m) => Some(("model.invertible_adapters", &mut m.model.invertible_adapters)),
        Family::Gpt2(m) => Some(("transformer.invertible_adapters", &mut m.transformer.invertible_adapters)),
        Family::Bert(m) => Some(("invertible_adapters", &mut m.invertible_adapters)),
        Family::BertClassifier(m) => Some(("bert.invertible_adapters", &mut m.bert.invertible_adapters)),
    }
}

/// The path of a fusion point beside a residual point's path (`…attention_adapters` →
/// `…attention_fusion`; BERT's `….adapters` → `….adapter_fusion_layer`).
pub fn fusion_path(point_path: &str) -> String {
    if let Some(p) = point_path.strip_suffix("_adapters") {
        format!("{p}_fusion")
    } else {
        format!("{}adapter_fusion_layer", point_path.strip_suffix("adapters").unwrap_or(point_path))
    }
}

/// The attention dropout AdapterHub's fusion takes from the model config (BERT's; 0 elsewhere).
fn attention_dropout(model: &Model) -> f64 {
    match &model.family {
        Family::Bert(m) => m.config.attention_dropout,
        Family::BertClassifier(m) => m.bert.config.attention_dropout,
        _ => 0.0,
    }
}

/// Copies an adapter file's tensors (tree names) into the parameters of `owner`.
fn load_into(model: &Model, owner: &str, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
    let _guard = tch::no_grad_guard();
    for p in model.named_parameters() {
        if p.owner == Owner::Adapter(owner.to_string()) {
            if let Some(t) = tensors.get(&p.name) {
                let mut dst = p.tensor;
                dst.f_copy_(&t.f_to_kind(dst.kind())?.f_to_device(dst.device())?)?;
            }
        }
    }
    Ok(())
}

/// Adds bottleneck adapter `name` with `config` (weights from `tensors`, by tree name, when
/// given). Everything is built and checked before the model changes. As the PEFT methods, the
/// first adapter becomes active and trainable, later ones are added inactive and frozen.
pub fn add_bottleneck(model: &mut Model, name: &str, config: BnConfig, tensors: Option<&BTreeMap<String, Tensor>>, trainable: bool) -> Result<()> {
    check_name(model, name)?;
    if name.contains(',') || name.contains('.') || name == "adapter_fusion_layer" {
        bail!("'{name}' cannot name a bottleneck adapter (no dots or commas)");
    }
    let hidden = model.hidden_size();
    let (kind, device) = (adapter_kind(model.dtype()), model.device());
    let layers = residual_points(model).len() as i64 / 2;
    if let Some(l) = config.leave_out.iter().find(|l| **l < 0 || **l >= layers) {
        bail!("leave_out names layer {l}, but the model has layers 0 to {}", layers - 1);
    }
    let mut built: Vec<(String, Bottleneck)> = Vec::new();
    for p in residual_points(model) {
        let wanted = match p.location {
            Location::Attention => config.mh_adapter,
            Location::Output => config.output_adapter,
        };
        if wanted && !config.leave_out.contains(&p.layer) {
            built.push((p.path, Bottleneck::new(name, &config, hidden, config.bottleneck(p.layer, hidden)?, kind, device)?));
        }
    }
    let invertible = match (&config.inv_adapter, invertible_point(model)) {
        (None, _) => None,
        (Some(_), None) => bail!("this model has no point for invertible adapters"),
        (Some(_), Some((path, _))) => Some((path.to_string(), NiceCoupling::new(name, hidden, &config.non_linearity, config.inv_adapter_reduction_factor.unwrap_or(2.0), kind, device)?)),
    };
    if let Some(tensors) = tensors {
        let mut expected = BTreeMap::new();
        for (path, m) in built.iter().map(|(p, b)| (p, b as &dyn Module)).chain(invertible.iter().map(|(p, n)| (p, n as &dyn Module))) {
            for (pname, t) in m.own_parameters() {
                expected.insert(format!("{path}.{name}.{pname}"), t.size());
            }
        }
        check_file(&expected, tensors, &model.architecture)?;
    }
    let mut paths: Vec<String> = built.iter().map(|(p, _)| p.clone()).collect();
    let activate = model.adapters.active.is_empty() && model.adapters.setup.is_none();
    let mut by_path: BTreeMap<String, Bottleneck> = built.into_iter().collect();
    for p in residual_points(model) {
        if let Some(adapter) = by_path.remove(&p.path) {
            p.point.adapters.attach(name, Box::new(adapter))?;
        }
    }
    if let Some((path, block)) = invertible {
        invertible_point(model).context("invertible point vanished")?.1.attach(name, Box::new(block))?;
        paths.push(path);
    }
    freeze_base(model)?;
    model.adapters.adapters.push(Adapter { name: name.to_string(), method: Method::Bottleneck(config), layers: paths, saved: Vec::new(), biases: Vec::new() });
    set_slots_active(model, &model.adapters.active.clone());
    if let Some(tensors) = tensors {
        load_into(model, name, tensors)?;
    }
    settle(model, name, activate, trainable)
}

/// Detaches bottleneck adapter `name` from its points (the registry entry is the caller's).
pub fn detach_bottleneck(model: &mut Model, name: &str) -> Result<()> {
    if let Some(f) = model.adapters.fusions.iter().find(|f| f.adapters.iter().any(|a| a == name)) {
        bail!("adapter '{name}' is part of fusion '{}'; delete the fusion first (model:delete_fusion)", f.name);
    }
    for p in residual_points(model) {
        if p.point.adapters.slots().iter().any(|s| s.name == name) {
            p.point.adapters.detach(name)?;
        }
    }
    if let Some((_, point)) = invertible_point(model) {
        if point.slots().iter().any(|s| s.name == name) {
            point.detach(name)?;
        }
    }
    Ok(())
}

/// Adds a fusion layer over the bottleneck adapters `names` at every point they all sit at.
/// They must be bottleneck adapters of the same placement (locations and left-out layers), as
/// AdapterHub requires; the fusion is named "a,b,c".
pub fn add_fusion(model: &mut Model, names: &[String], config: FusionConfig, tensors: Option<&BTreeMap<String, Tensor>>) -> Result<String> {
    if names.len() < 2 {
        bail!("a fusion needs at least two adapters, got {}", names.len());
    }
    let fusion_name = names.join(",");
    if model.adapters.fusions.iter().any(|f| f.name == fusion_name) {
        bail!("the model already has a fusion of {fusion_name}; delete it first");
    }
    let mut placement: Option<(&str, BnConfig)> = None;
    for n in names {
        let a = model.adapters.get(n)?;
        let Method::Bottleneck(c) = &a.method else { bail!("adapter '{n}' is a {} adapter; fusion combines bottleneck adapters", a.method.peft_type()) };
        if let Some((first, p)) = &placement {
            for (what, same) in [("mh_adapter", p.mh_adapter == c.mh_adapter), ("output_adapter", p.output_adapter == c.output_adapter), ("leave_out", p.leave_out == c.leave_out)] {
                if !same {
                    bail!("adapters '{first}' and '{n}' differ in {what}; fused adapters must sit at the same points");
                }
            }
        } else {
            placement = Some((n, c.clone()));
        }
    }
    let hidden = model.hidden_size();
    let (kind, device, dropout) = (adapter_kind(model.dtype()), model.device(), attention_dropout(model));
    let mut built = Vec::new();
    for p in residual_points(model) {
        if names.iter().all(|n| p.point.adapter(n).is_some()) {
            built.push((fusion_path(&p.path), FusionLayer::new(&fusion_name, &config, hidden, dropout, kind, device)?));
        }
    }
    if let Some(tensors) = tensors {
        let mut expected = BTreeMap::new();
        for (path, layer) in &built {
            for (pname, t) in layer.own_parameters() {
                expected.insert(format!("{path}.{fusion_name}.{pname}"), t.size());
            }
        }
        check_file(&expected, tensors, &model.architecture)?;
    }
    let mut by_path: BTreeMap<String, FusionLayer> = built.into_iter().collect();
    for p in residual_points(model) {
        if let Some(layer) = by_path.remove(&fusion_path(&p.path)) {
            p.point.fusion.attach(&fusion_name, Box::new(layer))?;
        }
    }
    model.adapters.fusions.push(Fusion { name: fusion_name.clone(), adapters: names.to_vec(), config });
    if let Some(tensors) = tensors {
        load_into(model, &fusion_name, tensors)?;
    }
    freeze_owner(model, &fusion_name, false)?;
    Ok(fusion_name)
}

/// Removes fusion `name` ("a,b,c") from every point.
pub fn delete_fusion(model: &mut Model, name: &str) -> Result<()> {
    if !model.adapters.fusions.iter().any(|f| f.name == name) {
        bail!("no fusion named '{name}' ({})", fusion_names(model));
    }
    if model.adapters.setup.as_ref().is_some_and(|s| s.fusions().iter().any(|(f, _)| f == name)) {
        bail!("fusion '{name}' is in the active setup; activate another setup first");
    }
    for p in residual_points(model) {
        if p.point.fusion.slots().iter().any(|s| s.name == name) {
            p.point.fusion.detach(name)?;
        }
    }
    model.adapters.fusions.retain(|f| f.name != name);
    Ok(())
}

fn fusion_names(model: &Model) -> String {
    if model.adapters.fusions.is_empty() {
        "the model has no fusions".into()
    } else {
        format!("fusions: {}", model.adapters.fusions.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", "))
    }
}

/// Checks a setup against the model: every adapter exists, every `Fuse` has its fusion, blocks
/// other than `Stack` hold only bottleneck adapters, and at most one prompt adapter is named.
pub fn check_setup(model: &Model, setup: &Setup) -> Result<()> {
    setup.check()?;
    for n in setup.flatten() {
        model.adapters.get(n)?;
    }
    for (fusion, _) in setup.fusions() {
        if !model.adapters.fusions.iter().any(|f| f.name == fusion) {
            bail!("the setup fuses {fusion}, but the model has no such fusion; add it with mt.peft.fusion(model, {{ {} }}) ({})", fusion.split(',').map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", "), fusion_names(model));
        }
    }
    let mut layer_only = Vec::new();
    collect_outside_stack(setup, &mut layer_only, false);
    for n in layer_only {
        let a = model.adapters.get(n)?;
        if !matches!(a.method, Method::Bottleneck(_)) {
            bail!("adapter '{n}' ({}) can only be in a Stack; {} blocks compose bottleneck adapters", a.method.peft_type(), "Fuse, Parallel, BatchSplit and Average");
        }
    }
    Ok(())
}

fn collect_outside_stack<'a>(setup: &'a Setup, out: &mut Vec<&'a str>, inside: bool) {
    match setup {
        Setup::Name(n) if inside => out.push(n),
        Setup::Name(_) => {}
        Setup::Stack(c) => c.iter().for_each(|c| collect_outside_stack(c, out, inside)),
        other => other.children().iter().for_each(|c| collect_outside_stack(c, out, true)),
    }
}

/// Makes `setup` the active composition: the adapters it names are active, the others not;
/// what trains does not change (AdapterHub's `set_active_adapters`).
pub fn set_active(model: &mut Model, setup: Setup) -> Result<()> {
    check_setup(model, &setup)?;
    let names: Vec<String> = setup.flatten().iter().map(|s| s.to_string()).collect();
    let prompts = names.iter().filter(|n| model.adapters.get(n).is_ok_and(|a| a.method.is_prompt())).count();
    if prompts > 1 {
        bail!("the setup names {prompts} prompt or prefix adapters; only one can be active");
    }
    set_slots_active(model, &names);
    model.adapters.active = names;
    model.adapters.setup = Some(setup);
    Ok(())
}

/// Trains the fusion layers of the setup's `Fuse` blocks and nothing else (the base model and
/// the fused adapters frozen), and makes the setup active (AdapterHub's `train_adapter_fusion`).
pub fn train_fusion(model: &mut Model, setup: Setup) -> Result<()> {
    check_setup(model, &setup)?;
    let fusions = setup.fusions();
    if fusions.is_empty() {
        bail!("the setup has no Fuse block; give mt.peft.fuse(\"a\", \"b\", ...) or the adapters' names");
    }
    set_active(model, setup)?;
    for p in model.named_parameters() {
        if is_floating(p.tensor.kind()) {
            let on = matches!(&p.owner, Owner::Adapter(o) if fusions.iter().any(|(f, _)| f == o));
            let mut t = p.tensor;
            let _ = t.f_requires_grad_(on)?;
        }
    }
    Ok(())
}

/// Whether any parameter of `owner` (an adapter or a fusion) trains.
pub fn is_trainable(model: &Model, owner: &str) -> bool {
    model.named_parameters().iter().any(|p| p.owner == Owner::Adapter(owner.to_string()) && p.tensor.requires_grad())
}

fn freeze_owner(model: &Model, owner: &str, on: bool) -> Result<()> {
    for p in model.named_parameters() {
        if p.owner == Owner::Adapter(owner.to_string()) {
            let mut t = p.tensor;
            let _ = t.f_requires_grad_(on)?;
        }
    }
    Ok(())
}

/// The mean attention weight of each fused adapter at each point over the last forward: a
/// (points, adapters) tensor, one row per point the fusion sits at (a layer's attention point
/// before its output point), and the rows' point paths. `name` picks the fusion when the model
/// has several.
pub fn fusion_weights(model: &Model, name: Option<&str>) -> Result<(Tensor, Vec<String>, Vec<String>)> {
    let fusion = match name {
        Some(n) => model.adapters.fusions.iter().find(|f| f.name == n).ok_or_else(|| anyhow!("no fusion named '{n}' ({})", fusion_names(model)))?,
        None => match model.adapters.fusions.as_slice() {
            [one] => one,
            [] => bail!("the model has no fusions"),
            _ => bail!("the model has several fusions ({}); name one", fusion_names(model)),
        },
    };
    let mut rows = Vec::new();
    let mut paths = Vec::new();
    for (path, m) in module::named_modules(model.root()) {
        if let Some(layer) = m.as_any().downcast_ref::<FusionLayer>().filter(|l| l.owner == fusion.name) {
            let Some(w) = layer.last_weights.borrow().as_ref().map(|w| w.shallow_clone()) else {
                bail!("fusion '{}' has not run yet: call the model first", fusion.name);
            };
            rows.push(w);
            paths.push(path);
        }
    }
    Ok((Tensor::f_stack(&rows, 0)?, paths, fusion.adapters.clone()))
}

/// The gate values of gated bottleneck adapters (`use_gating`) over the last forward: a
/// (points, adapters) tensor of each gate's mean over the batch (NaN where an adapter has no gate
/// at a point), the points' paths and the adapters' names.
pub fn gates(model: &Model) -> Result<(Tensor, Vec<String>, Vec<String>)> {
    let mut seen: Vec<(String, String, f64)> = Vec::new();
    for (path, m) in module::named_modules(model.root()) {
        if let Some(b) = m.as_any().downcast_ref::<Bottleneck>() {
            if let Some(g) = b.last_gate.borrow().as_ref() {
                let point = path.strip_suffix(&format!(".{}", b.owner)).unwrap_or(&path).to_string();
                seen.push((point, b.owner.clone(), g.f_mean(tch::Kind::Double)?.double_value(&[])));
            }
        }
    }
    if seen.is_empty() {
        bail!("no gated adapter has run: gates come from bottleneck adapters with use_gating = true, after a forward");
    }
    let mut points: Vec<String> = Vec::new();
    let mut adapters: Vec<String> = Vec::new();
    for (p, a, _) in &seen {
        if !points.contains(p) {
            points.push(p.clone());
        }
        if !adapters.contains(a) {
            adapters.push(a.clone());
        }
    }
    let mut values = vec![f64::NAN; points.len() * adapters.len()];
    for (p, a, v) in &seen {
        let (i, j) = (points.iter().position(|x| x == p).unwrap_or(0), adapters.iter().position(|x| x == a).unwrap_or(0));
        values[i * adapters.len() + j] = *v;
    }
    let t = Tensor::f_from_slice(&values)?.f_view([points.len() as i64, adapters.len() as i64])?.f_to_kind(tch::Kind::Float)?;
    Ok((t, points, adapters))
}

/// What the model decided on the last forward, for heat maps: each fusion's weights (named
/// "fusion a,b,c") and the gated adapters' gates ("gates"), with the rows' labels ("3
/// attention", "3 output": layer and point), the columns (adapters) and the values.
pub fn model_panels(model: &Model) -> Vec<(String, Vec<String>, Vec<String>, Tensor)> {
    let mut out = Vec::new();
    for f in &model.adapters.fusions {
        if let Ok((weights, points, adapters)) = fusion_weights(model, Some(&f.name)) {
            let rows = points.iter().map(|p| point_label(p)).collect();
            out.push((format!("fusion {}", f.name), rows, adapters, weights));
        }
    }
    // The run loop asks at every step: walk the tree only when some adapter has a gate.
    if model.adapters.adapters.iter().any(|a| matches!(&a.method, Method::Bottleneck(c) if c.use_gating)) {
        if let Ok((values, points, adapters)) = gates(model) {
            out.push(("gates".to_string(), points.iter().map(|p| point_label(p)).collect(), adapters, values));
        }
    }
    out
}

/// "3 attention" or "3 output" for a point's path (its first number is the layer).
fn point_label(path: &str) -> String {
    let layer = path.split('.').find(|s| s.parse::<u64>().is_ok()).unwrap_or("?");
    let location = if path.contains("attention") { "attention" } else { "output" };
    format!("{layer} {location}")
}

/// AdapterHub's fusion regularisation: 0.01 · Σ‖I − V‖² over the trained value matrices of
/// fusions whose config asks for it (None when none does).
pub fn fusion_regularization(model: &Model) -> Result<Option<Tensor>> {
    let mut total: Option<Tensor> = None;
    for (_, m) in module::named_modules(model.root()) {
        if let Some(layer) = m.as_any().downcast_ref::<FusionLayer>() {
            if let (true, Some(v)) = (model.adapters.fusions.iter().any(|f| f.name == layer.owner && f.config.regularization), &layer.value) {
                if v.requires_grad() {
                    let eye = Tensor::f_eye(v.size()[0], (v.kind(), v.device()))?;
                    let term = eye.f_sub(v)?.f_square()?.f_sum(v.kind())?.f_mul_scalar(0.01)?;
                    total = Some(match total {
                        Some(t) => t.f_add(&term)?,
                        None => term,
                    });
                }
            }
        }
    }
    Ok(total)
}
