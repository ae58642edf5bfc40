//! Modular adapters on a model, as AdapterHub's model mixin: bottleneck adapters added at the
//! residual points of every layer (and, for invertible configs, after the embeddings), fusion
//! layers over several of them, the active composition (`set_active`), training a fusion
//! (`train_fusion`) and what fusions decided on the last forward (`fusion_weights`).

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};
use tch::Tensor;

use super::bottleneck::{BnConfig, Bottleneck, NiceCoupling};
use super::fusion::{Fusion, FusionConfig, FusionLayer};
use super::hub_lora::HubLora;
use super::hub_prefix::LayerPrefix;
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
pub fn load_into(model: &Model, owner: &str, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
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

/// Refuses names that cannot name a modular adapter (they appear in fusion names and paths).
pub fn check_adapter_name(name: &str) -> Result<()> {
    if name.contains(',') || name.contains('.') || name == "adapter_fusion_layer" {
        bail!("'{name}' cannot name a bottleneck adapter (no dots or commas)");
    }
    Ok(())
}

/// A bottleneck adapter's blocks, built but not attached: per residual point, and the
/// invertible block if the config has one (each with its point's path).
pub struct BuiltBottleneck {
    points: Vec<(String, Bottleneck)>,
    invertible: Option<(String, NiceCoupling)>,
}

impl BuiltBottleneck {
    pub fn modules(&self) -> Vec<(&str, &dyn Module)> {
        self.points.iter().map(|(p, b)| (p.as_str(), b as &dyn Module)).chain(self.invertible.iter().map(|(p, n)| (p.as_str(), n as &dyn Module))).collect()
    }
}

/// Builds bottleneck adapter `name` with `config` for the model, changing nothing.
pub fn build_bottleneck(model: &mut Model, name: &str, config: &BnConfig) -> Result<BuiltBottleneck> {
    let hidden = model.hidden_size();
    let (kind, device) = (adapter_kind(model.dtype()), model.device());
    let layers = residual_points(model).len() as i64 / 2;
    if let Some(l) = config.leave_out.iter().find(|l| **l < 0 || **l >= layers) {
        bail!("leave_out names layer {l}, but the model has layers 0 to {}", layers - 1);
    }
    let mut points = Vec::new();
    for p in residual_points(model) {
        let wanted = match p.location {
            Location::Attention => config.mh_adapter,
            Location::Output => config.output_adapter,
        };
        if wanted && !config.leave_out.contains(&p.layer) {
            points.push((p.path, Bottleneck::new(name, config, hidden, config.bottleneck(p.layer, hidden)?, kind, device)?));
        }
    }
    let invertible = match (&config.inv_adapter, invertible_point(model)) {
        (None, _) => None,
        (Some(_), None) => bail!("this model has no point for invertible adapters"),
        (Some(_), Some((path, _))) => Some((path.to_string(), NiceCoupling::new(name, hidden, &config.non_linearity, config.inv_adapter_reduction_factor.unwrap_or(2.0), kind, device)?)),
    };
    Ok(BuiltBottleneck { points, invertible })
}

/// Attaches what `build_bottleneck` made; returns the points' paths.
pub fn attach_bottleneck(model: &mut Model, name: &str, built: BuiltBottleneck) -> Result<Vec<String>> {
    let mut paths: Vec<String> = built.points.iter().map(|(p, _)| p.clone()).collect();
    let mut by_path: BTreeMap<String, Bottleneck> = built.points.into_iter().collect();
    for p in residual_points(model) {
        if let Some(adapter) = by_path.remove(&p.path) {
            p.point.adapters.attach(name, Box::new(adapter))?;
        }
    }
    if let Some((path, block)) = built.invertible {
        invertible_point(model).context("invertible point vanished")?.1.attach(name, Box::new(block))?;
        paths.push(path);
    }
    Ok(paths)
}

/// Checks an adapter file's tensors (tree names) against what was built for `owner`: the
/// modules with the paths of their points.
pub fn check_built(model: &Model, owner: &str, modules: &[(&str, &dyn Module)], tensors: &BTreeMap<String, Tensor>) -> Result<()> {
    let mut expected = BTreeMap::new();
    for (path, m) in modules {
        for (pname, t) in m.own_parameters() {
            expected.insert(format!("{path}.{owner}.{pname}"), t.size());
        }
    }
    check_file(&expected, tensors, &model.architecture)
}

/// Adds bottleneck adapter `name` with `config` (weights from `tensors`, by tree name, when
/// given). Everything is built and checked before the model changes. As the PEFT methods, the
/// first adapter becomes active and trainable, later ones are added inactive and frozen.
pub fn add_bottleneck(model: &mut Model, name: &str, config: BnConfig, tensors: Option<&BTreeMap<String, Tensor>>, trainable: bool) -> Result<()> {
    check_name(model, name)?;
    check_adapter_name(name)?;
    let built = build_bottleneck(model, name, &config)?;
    if let Some(tensors) = tensors {
        check_built(model, name, &built.modules(), tensors)?;
    }
    let activate = model.adapters.active.is_empty() && model.adapters.setup.is_none();
    let paths = attach_bottleneck(model, name, built)?;
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
        let modules: Vec<(&str, &dyn Module)> = built.iter().map(|(p, l)| (p.as_str(), l as &dyn Module)).collect();
        check_built(model, &fusion_name, &modules, tensors)?;
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
    find_fusion(model, name)?;
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

/// Fusion `name` ("a,b,c") of the model, or an error listing its fusions.
fn find_fusion<'a>(model: &'a Model, name: &str) -> Result<&'a Fusion> {
    model.adapters.fusions.iter().find(|f| f.name == name).ok_or_else(|| anyhow!("no fusion named '{name}' ({})", fusion_names(model)))
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
        Some(n) => find_fusion(model, n)?,
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

/// The parts of a gated adapter, as gates() names its columns.
pub const GATED_PARTS: [&str; 3] = ["lora", "prefix", "adapter"];

/// The gates an adapter's parts computed on the last forward, by layer: (layer, part, mean over
/// the batch, and over q/k/v or keys/values where a part has several outputs).
fn gate_values(model: &Model, name: &str) -> Result<Vec<(i64, usize, f64)>> {
    let mut seen = Vec::new();
    for (path, m) in module::named_modules(model.root()) {
        let any = m.as_any();
        let gate = if let Some(b) = any.downcast_ref::<Bottleneck>().filter(|b| b.owner == name) {
            b.last_gate.borrow().as_ref().map(|g| (2, g.shallow_clone()))
        } else if let Some(p) = any.downcast_ref::<LayerPrefix>().filter(|p| p.owner == name) {
            p.last_gate.borrow().as_ref().map(|g| (1, g.shallow_clone()))
        } else if let Some(l) = any.downcast_ref::<HubLora>().filter(|l| l.owner == name) {
            l.last_gate.borrow().as_ref().map(|g| (0, g.shallow_clone()))
        } else {
            None
        };
        if let Some((part, g)) = gate {
            let layer = path.split('.').find_map(|s| s.parse::<i64>().ok()).unwrap_or(0);
            seen.push((layer, part, g.f_to_kind(tch::Kind::Double)?));
        }
    }
    // One number per (layer, part): the mean over every gate value of that part in the layer.
    let mut out: Vec<(i64, usize, f64)> = Vec::new();
    let mut keys: Vec<(i64, usize)> = seen.iter().map(|(l, p, _)| (*l, *p)).collect();
    keys.sort();
    keys.dedup();
    for (layer, part) in keys {
        let values: Vec<Tensor> = seen.iter().filter(|(l, p, _)| *l == layer && *p == part).map(|(_, _, g)| g.reshape([-1])).collect();
        out.push((layer, part, Tensor::f_cat(&values, 0)?.f_mean(tch::Kind::Double)?.double_value(&[])));
    }
    Ok(out)
}

/// The gated adapters of the model (bottleneck adapters with `use_gating`, gated unions).
fn gated_adapters(model: &Model) -> Vec<String> {
    model.adapters.adapters.iter().filter(|a| matches!(&a.method, Method::Bottleneck(c) if c.use_gating) || matches!(&a.method, Method::Union(c) if c.gated())).map(|a| a.name.clone()).collect()
}

/// The gates of gated adapter `name` (the only gated one when None) over the last forward, as
/// UniPELT reports them: a (layers, parts) tensor — parts among "lora", "prefix", "adapter" —
/// each the gate's mean over the batch (and over a layer's LoRA matrices, prefix keys and
/// values, or adapter points), with the layers' labels and the parts' names.
pub fn gates(model: &Model, name: Option<&str>) -> Result<(Tensor, Vec<String>, Vec<String>)> {
    let gated = gated_adapters(model);
    let name = match name {
        Some(n) => {
            model.adapters.get(n)?;
            if !gated.iter().any(|g| g == n) {
                bail!("adapter '{n}' has no gates: gates come from bottleneck adapters with use_gating = true and unions with gated parts (UniPELT)");
            }
            n.to_string()
        }
        None => match gated.as_slice() {
            [one] => one.clone(),
            [] => bail!("no adapter has gates: gates come from bottleneck adapters with use_gating = true and unions with gated parts (UniPELT)"),
            _ => bail!("several adapters have gates ({}); name one", gated.join(", ")),
        },
    };
    let seen = gate_values(model, &name)?;
    if seen.is_empty() {
        bail!("adapter '{name}' has not run yet: call the model first");
    }
    let mut layers: Vec<i64> = seen.iter().map(|(l, _, _)| *l).collect();
    layers.dedup();
    let parts: Vec<usize> = (0..GATED_PARTS.len()).filter(|p| seen.iter().any(|(_, q, _)| q == p)).collect();
    let mut values = vec![f64::NAN; layers.len() * parts.len()];
    for (l, p, v) in &seen {
        if let (Some(i), Some(j)) = (layers.iter().position(|x| x == l), parts.iter().position(|x| x == p)) {
            values[i * parts.len() + j] = *v;
        }
    }
    let t = Tensor::f_from_slice(&values)?.f_view([layers.len() as i64, parts.len() as i64])?.f_to_kind(tch::Kind::Float)?;
    Ok((t, layers.iter().map(|l| format!("layer {l}")).collect(), parts.iter().map(|p| GATED_PARTS[*p].to_string()).collect()))
}

/// What the model decided on the last forward, for heat maps: each fusion's weights (named
/// "fusion a,b,c", rows "3 attention", "3 output": layer and point) and each gated adapter's
/// gates ("gates <name>", layers × parts), with the rows' labels, the columns and the values.
pub fn model_panels(model: &Model) -> Vec<(String, Vec<String>, Vec<String>, Tensor)> {
    let mut out = Vec::new();
    for f in &model.adapters.fusions {
        if let Ok((weights, points, adapters)) = fusion_weights(model, Some(&f.name)) {
            let rows = points.iter().map(|p| point_label(p)).collect();
            out.push((format!("fusion {}", f.name), rows, adapters, weights));
        }
    }
    // The run loop asks at every step: walk the tree only for adapters that have gates.
    for name in gated_adapters(model) {
        if let Ok((values, layers, parts)) = gates(model, Some(&name)) {
            out.push((format!("gates {name}"), layers, parts, values));
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

/// The softmax temperature fusion `name`'s layers use next (50 annealing down to 1 with
/// `temperature`, else 1).
pub fn fusion_temperature(model: &Model, name: &str) -> Result<f64> {
    find_fusion(model, name)?;
    let layers = module::named_modules(model.root());
    let layer = layers.iter().find_map(|(_, m)| m.as_any().downcast_ref::<FusionLayer>().filter(|l| l.owner == name));
    Ok(layer.map(|l| l.temperature()).unwrap_or(1.0))
}

/// Sets the temperature of every layer of fusion `name` (a number ≥ 1; annealing goes on from it).
pub fn set_fusion_temperature(model: &Model, name: &str, t: f64) -> Result<()> {
    find_fusion(model, name)?;
    if !t.is_finite() || t < 1.0 {
        bail!("a fusion temperature must be a number ≥ 1, got {t}");
    }
    for (_, m) in module::named_modules(model.root()) {
        if let Some(l) = m.as_any().downcast_ref::<FusionLayer>().filter(|l| l.owner == name) {
            l.set_temperature(t);
        }
    }
    Ok(())
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
