//! Parameter-efficient fine-tuning on the loaded models, as Hugging Face PEFT 0.21: LoRA and its
//! variants (rsLoRA, DoRA, PiSSA and OLoRA initialisation, rank and alpha patterns,
//! `modules_to_save`, bias modes), IA3, many named adapters on one model, PEFT's files both ways,
//! merging and weighted combination.
//!
//! An adapter's layers hang on the linear attachment points of the module tree (nn::attach):
//! its parameters are in the tree under `<layer>.adapters.<name>.…`, owned by it. The model's
//! [`Registry`] keeps what the tree does not: each adapter's config, the layers it is on, and
//! which adapters are active.

pub mod adapterhub;
pub mod bottleneck;
pub mod combine;
pub mod config;
pub mod custom;
pub mod files;
pub mod fusion;
pub mod hub_lora;
pub mod hub_prefix;
pub mod ia3;
pub mod inject;
pub mod lora;
pub mod merge;
pub mod modular;
pub mod prompt;
pub mod quantize;
pub mod saved;
pub mod targets;
pub mod union;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{Map, Value};

use crate::models::model::{Family, Model};
use crate::nn::attach::PromptPoint;
use crate::nn::linear::Linear;
use crate::nn::module::{self, Owner};
use crate::tensor::dtype::is_floating;
use config::{Ia3Config, LoraConfig, PrefixConfig, PromptConfig};

/// An adapter method and its config.
#[derive(Clone, Debug)]
pub enum Method {
    Lora(LoraConfig),
    Ia3(Ia3Config),
    Prompt(PromptConfig),
    Prefix(PrefixConfig),
    /// A bottleneck adapter at the residual points (AdapterHub's).
    Bottleneck(bottleneck::BnConfig),
    /// AdapterHub's union of prefix tuning, a bottleneck adapter and LoRA (UniPELT, MAM).
    Union(union::UnionConfig),
    /// A method defined in Lua (or elsewhere outside this crate).
    Custom(custom::CustomConfig),
}

impl Method {
    pub fn peft_type(&self) -> &str {
        match self {
            Method::Lora(_) => "LORA",
            Method::Ia3(_) => "IA3",
            Method::Prompt(_) => "PROMPT_TUNING",
            Method::Prefix(_) => "PREFIX_TUNING",
            Method::Bottleneck(_) => "BOTTLENECK",
            Method::Union(_) => "UNION",
            Method::Custom(c) => c.method.name(),
        }
    }

    /// The layers a layer method targets; None for the virtual-token methods.
    pub fn selection(&self) -> Option<&targets::Selection> {
        match self {
            Method::Lora(c) => Some(&c.selection),
            Method::Ia3(c) => Some(&c.selection),
            Method::Custom(c) => Some(&c.selection),
            Method::Prompt(_) | Method::Prefix(_) | Method::Bottleneck(_) | Method::Union(_) => None,
        }
    }

    /// Whether it adds virtual tokens (prompt or prefix tuning) rather than layers.
    pub fn is_prompt(&self) -> bool {
        matches!(self, Method::Prompt(_) | Method::Prefix(_))
    }
}

/// One adapter added to a model.
#[derive(Clone, Debug)]
pub struct Adapter {
    pub name: String,
    pub method: Method,
    /// The layers carrying its LoRA or IA3 layers, in tree order (a bottleneck adapter's
    /// residual and invertible points).
    pub layers: Vec<String>,
    /// The layers it keeps a trainable copy of (`modules_to_save`).
    pub saved: Vec<String>,
    /// The base model's biases that train and are saved with it (`bias`).
    pub biases: Vec<String>,
}

/// The adapters of a model and which are active.
#[derive(Default)]
pub struct Registry {
    pub adapters: Vec<Adapter>,
    pub active: Vec<String>,
    /// Adapters switched off for a while (`disable_adapters`).
    pub disabled: bool,
    /// The composition residual points run (`set_active` with a block), if one is set.
    pub setup: Option<crate::nn::compose::Setup>,
    /// The fusion layers added (`mt.peft.fusion`).
    pub fusions: Vec<fusion::Fusion>,
}

impl Registry {
    pub fn get(&self, name: &str) -> Result<&Adapter> {
        self.adapters.iter().find(|a| a.name == name).ok_or_else(|| anyhow!("no adapter named '{name}' ({})", self.names_text()))
    }

    pub fn names_text(&self) -> String {
        if self.adapters.is_empty() {
            "the model has no adapters".into()
        } else {
            format!("adapters: {}", self.adapters.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", "))
        }
    }

    /// The adapter a call means when it names none: the only one, or the only active one.
    pub fn default_name(&self) -> Result<String> {
        match (self.adapters.as_slice(), self.active.as_slice()) {
            ([only], _) => Ok(only.name.clone()),
            ([], _) => bail!("the model has no adapters"),
            (_, [one]) => Ok(one.clone()),
            _ => bail!("the model has several adapters ({}); name one", self.names_text()),
        }
    }
}

/// The name of the layer producing the logits, which `"all-linear"` leaves out.
pub fn output_head(model: &Model) -> &'static str {
    match model.family {
        Family::Bert(_) => "",
        Family::LlamaClassifier(_) => "score",
        Family::BertClassifier(_) => "classifier",
        _ => "lm_head",
    }
}

/// PEFT's default LoRA targets for the architecture (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING).
pub fn default_lora_targets(model: &Model) -> Vec<String> {
    let names: &[&str] = match model.family {
        Family::Llama(_) | Family::LlamaClassifier(_) => &["q_proj", "v_proj"],
        Family::Gpt2(_) => &["c_attn"],
        Family::Bert(_) | Family::BertClassifier(_) => &["query", "value"],
    };
    names.iter().map(|s| s.to_string()).collect()
}

/// PEFT's default IA3 targets and feed-forward modules for the architecture.
pub fn default_ia3_targets(model: &Model) -> (Vec<String>, Vec<String>) {
    let (t, f): (&[&str], &[&str]) = match model.family {
        Family::Llama(_) | Family::LlamaClassifier(_) => (&["k_proj", "v_proj", "down_proj"], &["down_proj"]),
        Family::Gpt2(_) => (&["c_attn", "mlp.c_proj"], &["mlp.c_proj"]),
        Family::Bert(_) | Family::BertClassifier(_) => (&["key", "value", "output.dense"], &["output.dense"]),
    };
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
    (v(t), v(f))
}

/// Parses a method's options (moontune's names) for `model`.
pub fn method_from_options(model: &Model, peft_type: &str, options: Map<String, Value>) -> Result<Method> {
    Ok(match peft_type {
        "LORA" => Method::Lora(LoraConfig::parse(options, config::Source::Options, default_lora_targets(model))?),
        "IA3" => Method::Ia3(Ia3Config::parse(options, config::Source::Options, default_ia3_targets(model))?),
        "PROMPT_TUNING" => Method::Prompt(PromptConfig::parse(options, config::Source::Options)?),
        "PREFIX_TUNING" => Method::Prefix(PrefixConfig::parse(options, config::Source::Options)?),
        "BOTTLENECK" => Method::Bottleneck(bottleneck::BnConfig::from_options(options)?),
        "UNION" => Method::Union(union::UnionConfig::from_options(options)?),
        other => bail!("unknown method '{other}'"),
    })
}

/// `task_type` as adapter_config.json records it.
pub fn task_type(model: &Model) -> &'static str {
    match model.family {
        Family::LlamaClassifier(_) | Family::BertClassifier(_) => "SEQ_CLS",
        _ if model.is_causal_lm() => "CAUSAL_LM",
        _ => "FEATURE_EXTRACTION",
    }
}

pub fn linear<'a>(model: &'a Model, path: &str) -> Result<&'a Linear> {
    let m = module::get_submodule(model.root(), path)?;
    m.as_any().downcast_ref::<Linear>().ok_or_else(|| anyhow!("'{path}' ({}) is not a linear layer", m.class_name()))
}

pub fn linear_mut<'a>(model: &'a mut Model, path: &str) -> Result<&'a mut Linear> {
    let m = module::get_submodule_mut(model.root_mut(), path)?;
    m.as_any_mut().downcast_mut::<Linear>().ok_or_else(|| anyhow!("'{path}' is not a linear layer"))
}

/// A causal LM's `prompt_encoder` point (None for an encoder).
pub fn prompt_point(model: &mut Model) -> Option<&mut PromptPoint> {
    match &mut model.family {
        Family::Llama(m) => Some(&mut m.prompt_encoder),
        Family::Gpt2(m) => Some(&mut m.prompt_encoder),
        Family::Bert(_) | Family::BertClassifier(_) | Family::LlamaClassifier(_) => None,
    }
}

/// The names of every linear layer carrying adapters.
fn adapted_layers(model: &Model) -> Vec<String> {
    module::named_modules(model.root()).into_iter().filter(|(_, m)| m.as_any().downcast_ref::<Linear>().is_some_and(|l| !l.adapters.is_empty())).map(|(n, _)| n).collect()
}

/// Marks exactly the slots of `names` active at every point (linear, prompt, residual,
/// invertible, prefix).
pub fn set_slots_active(model: &mut Model, names: &[String]) {
    for layer in adapted_layers(model) {
        if let Ok(l) = linear_mut(model, &layer) {
            for slot in l.adapters.slots_mut() {
                slot.active = names.contains(&slot.name);
            }
        }
    }
    if let Some(point) = prompt_point(model) {
        for slot in point.slots_mut() {
            slot.active = names.contains(&slot.name);
        }
    }
    for p in modular::residual_points(model) {
        for slot in p.point.adapters.slots_mut() {
            slot.active = names.contains(&slot.name);
        }
    }
    if let Some((_, point)) = modular::invertible_point(model) {
        for slot in point.slots_mut() {
            slot.active = names.contains(&slot.name);
        }
    }
    let (attention, (_, pool)) = union::attention_points(model);
    for slot in attention.into_iter().flat_map(|a| a.prefix.slots_mut()) {
        slot.active = names.contains(&slot.name);
    }
    for slot in pool.slots_mut() {
        slot.active = names.contains(&slot.name);
    }
}

/// Makes exactly `names` active (and trainable, the others frozen), as PEFT's `set_adapter`;
/// an empty list leaves the base model alone. A composition set before is dropped.
pub fn set_adapter(model: &mut Model, names: &[String]) -> Result<()> {
    let prompts: Vec<&String> = names.iter().filter(|n| model.adapters.get(n).is_ok_and(|a| a.method.is_prompt())).collect();
    for n in names {
        model.adapters.get(n)?;
    }
    if prompts.len() > 1 {
        bail!("adapters {} both add virtual tokens; only one prompt or prefix adapter can be active", prompts.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(" and "));
    }
    set_slots_active(model, names);
    model.adapters.active = names.to_vec();
    model.adapters.setup = None;
    train_adapter(model, names)
}

/// Makes the parameters of `names` (adapters or fusions, "a,b") trainable and those of every
/// other adapter and fusion frozen; whether an adapter is active does not change (AdapterHub's
/// `train_adapter`).
pub fn train_adapter(model: &mut Model, names: &[String]) -> Result<()> {
    for n in names {
        if !model.adapters.fusions.iter().any(|f| &f.name == n) {
            model.adapters.get(n)?;
        }
    }
    let trained_biases: Vec<String> = model.adapters.adapters.iter().filter(|a| names.contains(&a.name)).flat_map(|a| a.biases.clone()).collect();
    let all_biases: Vec<String> = model.adapters.adapters.iter().flat_map(|a| a.biases.clone()).collect();
    for p in model.named_parameters() {
        let on = match &p.owner {
            Owner::Adapter(a) => names.contains(a),
            Owner::Base if all_biases.contains(&p.name) => trained_biases.contains(&p.name),
            Owner::Base => continue,
        };
        if is_floating(p.tensor.kind()) {
            let mut t = p.tensor;
            let _ = t.f_requires_grad_(on)?;
        }
    }
    Ok(())
}

/// Removes adapter `name` from every layer and from the registry.
pub fn delete_adapter(model: &mut Model, name: &str) -> Result<()> {
    let adapter = model.adapters.get(name)?.clone();
    if model.adapters.setup.as_ref().is_some_and(|s| s.flatten().contains(&name)) {
        bail!("adapter '{name}' is in the active setup; activate another setup first");
    }
    if matches!(adapter.method, Method::Bottleneck(_)) {
        modular::detach_bottleneck(model, name)?;
        model.adapters.adapters.retain(|a| a.name != name);
        model.adapters.active.retain(|a| a != name);
        return Ok(());
    }
    if matches!(adapter.method, Method::Union(_)) {
        union::detach_union(model, name, &adapter.layers)?;
        model.adapters.adapters.retain(|a| a.name != name);
        model.adapters.active.retain(|a| a != name);
        return Ok(());
    }
    for layer in adapter.layers.iter().chain(&adapter.saved) {
        let l = linear_mut(model, layer)?;
        if l.adapters.slots().iter().any(|s| s.name == name && s.merged) {
            bail!("adapter '{name}' is merged into '{layer}'; unmerge it before deleting it");
        }
    }
    for layer in adapter.layers.iter().chain(&adapter.saved) {
        linear_mut(model, layer)?.adapters.detach(name)?;
    }
    if adapter.method.is_prompt() {
        prompt_point(model).context("no prompt point")?.detach(name)?;
    }
    model.adapters.adapters.retain(|a| a.name != name);
    model.adapters.active.retain(|a| a != name);
    Ok(())
}

/// One line per adapter for summaries and the TUI.
#[derive(Clone, Debug, PartialEq)]
pub struct AdapterSummary {
    pub name: String,
    pub method: String,
    pub active: bool,
    pub parameters: i64,
    pub trainable: i64,
    /// ‖θ‖ over its parameters.
    pub norm: f64,
    /// ‖∇θ‖ over its parameters' current gradients, if any has one.
    pub grad_norm: Option<f64>,
}

pub fn summary(model: &Model) -> Result<Vec<AdapterSummary>> {
    let params = model.named_parameters();
    let mut out = Vec::new();
    for a in &model.adapters.adapters {
        let mine: Vec<_> = params.iter().filter(|p| p.owner == Owner::Adapter(a.name.clone())).collect();
        let (mut sq, mut gsq, mut has_grad) = (0.0, 0.0, false);
        for p in &mine {
            sq += p.tensor.f_detach()?.f_to_kind(tch::Kind::Double)?.f_square()?.f_sum(tch::Kind::Double)?.double_value(&[]);
            let g = p.tensor.grad();
            if g.defined() {
                has_grad = true;
                gsq += g.f_to_kind(tch::Kind::Double)?.f_square()?.f_sum(tch::Kind::Double)?.double_value(&[]);
            }
        }
        let method = match &a.method {
            Method::Lora(c) if c.use_dora => "DoRA",
            Method::Lora(_) => "LoRA",
            Method::Ia3(_) => "IA3",
            Method::Prompt(_) => "prompt",
            Method::Prefix(_) => "prefix",
            Method::Bottleneck(c) if c.is_parallel => "par_bn",
            Method::Bottleneck(_) => "bottleneck",
            Method::Union(_) => "union",
            Method::Custom(c) => c.method.name(),
        };
        out.push(AdapterSummary {
            name: a.name.clone(),
            method: method.into(),
            active: model.adapters.active.contains(&a.name),
            parameters: mine.iter().map(|p| p.elements).sum(),
            trainable: mine.iter().filter(|p| p.tensor.requires_grad()).map(|p| p.elements).sum(),
            norm: sq.sqrt(),
            grad_norm: has_grad.then(|| gsq.sqrt()),
        });
    }
    Ok(out)
}
