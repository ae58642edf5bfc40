//! AdapterHub's adapter files both ways: a bottleneck adapter's directory (`adapter_config.json`
//! + `adapter.safetensors`) and a fusion's (`adapter_fusion_config.json` +
//! `model_adapter_fusion.safetensors`), with the keys of the model's state dict as `adapters`
//! 1.3 names them (`model.layers.0.output_adapters.adapters.a.adapter_up.weight`,
//! `encoder.layer.0.output.adapter_fusion_layer.a,b.query.weight`), so that `load_adapter` and
//! `load_adapter_fusion` read what moontune writes and moontune reads what `adapters` writes.
//! Unions (UniPELT, MAM, prefix tuning, LoRA) too: LoRA's layers under `….q_proj.loras.<name>.`,
//! prefix gates under `….self_attn.prefix_tuning.prefix_gates.<name>.` and the prefix pool under
//! `model.prefix_tuning.prefix_tunings.<name>.self_prefix.` (which `adapters` also lists under
//! every attention's `prefix_tuning.pool.…`: written for each, read once). Pickle files are
//! refused.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use tch::{Device, Tensor};

use super::bottleneck::BnConfig;
use super::fusion::FusionConfig;
use super::hub_lora::HubLora;
use super::modular::{add_bottleneck, add_fusion};
use super::union::{add_union, attention_layout, UnionConfig};
use super::Method;
use crate::io::{load_safetensors, save_safetensors, write_atomic};
use crate::models::model::{Family, Model};
use crate::nn::module::{self, Owner};

pub const ADAPTER_CONFIG: &str = "adapter_config.json";
pub const ADAPTER_WEIGHTS: &str = "adapter.safetensors";
pub const FUSION_CONFIG: &str = "adapter_fusion_config.json";
pub const FUSION_WEIGHTS: &str = "model_adapter_fusion.safetensors";
const VERSION: &str = "adapters.1.3.0";

/// Whether `dir` holds AdapterHub files (a fusion's config, or an adapter config without PEFT's
/// `peft_type`).
pub fn is_adapterhub_dir(dir: &Path) -> bool {
    if dir.join(FUSION_CONFIG).exists() {
        return true;
    }
    std::fs::read_to_string(dir.join(ADAPTER_CONFIG)).ok().and_then(|t| serde_json::from_str::<Value>(&t).ok()).is_some_and(|v| v.get("peft_type").is_none() && v.get("config").is_some_and(|c| c.is_object()))
}

/// transformers' `model_type` of the model (its config's, else the family's).
fn model_type(model: &Model) -> String {
    model.config.json.get("model_type").and_then(|v| v.as_str()).map(str::to_string).unwrap_or_else(|| {
        match model.family {
            Family::Llama(_) | Family::LlamaClassifier(_) => "llama",
            Family::Gpt2(_) => "gpt2",
            Family::Bert(_) | Family::BertClassifier(_) => "bert",
        }
        .to_string()
    })
}

/// The prefix of the base model's modules in this model's tree.
fn base_prefix(model: &Model) -> &'static str {
    match model.family {
        Family::Llama(_) | Family::LlamaClassifier(_) => "model.",
        Family::Gpt2(_) => "transformer.",
        Family::Bert(_) => "",
        Family::BertClassifier(_) => "bert.",
    }
}

/// A tree name as AdapterHub's state dict spells it.
fn to_file_key(tree: &str) -> String {
    tree.replace(".attention_adapters.", ".attention_adapters.adapters.")
        .replace(".output_adapters.", ".output_adapters.adapters.")
        .replace(".attention_fusion.", ".attention_adapters.adapter_fusion_layer.")
        .replace(".output_fusion.", ".output_adapters.adapter_fusion_layer.")
}

/// A file key as this model's tree names it: the inverse of `to_file_key`, with the base
/// model's prefix of this model (a file saved from `BertModel` loads into
/// `BertForSequenceClassification` and back).
fn to_tree_name(model: &Model, key: &str) -> String {
    let name = key
        .replace(".loras.", ".adapters.")
        .replace(".prefix_tuning.prefix_gates.", ".prefix_gates.")
        .replace(".attention_adapters.adapters.", ".attention_adapters.")
        .replace(".output_adapters.adapters.", ".output_adapters.")
        .replace(".attention_adapters.adapter_fusion_layer.", ".attention_fusion.")
        .replace(".output_adapters.adapter_fusion_layer.", ".output_fusion.");
    let bare = ["bert.", "transformer.", "model."].iter().find_map(|p| name.strip_prefix(p)).unwrap_or(&name);
    format!("{}{bare}", base_prefix(model))
}

fn detached(t: &Tensor) -> Result<Tensor> {
    Ok(t.f_detach()?.f_to_device(Device::Cpu)?.f_contiguous()?)
}

fn meta(model: &Model, name: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("hidden_size".into(), json!(model.hidden_size()));
    m.insert("model_class".into(), json!(model.architecture));
    m.insert("model_name".into(), json!(""));
    m.insert("model_type".into(), json!(model_type(model)));
    m.insert("name".into(), json!(name));
    m.insert("version".into(), json!(VERSION));
    m
}

/// The prefix pool's key stem in AdapterHub's files: `<base>prefix_tuning.<name>.` →
/// `<base>prefix_tuning.prefix_tunings.<name>.self_prefix.`.
const POOL: &str = "prefix_tuning.prefix_tunings.";
const LOCATION: &str = "self_prefix";

/// A file key as the tree names it, for the prefix pool's keys (others unchanged); None for the
/// per-attention copies of the pool, which are read once from the pool's own keys.
fn pool_tree_key(key: &str) -> Option<String> {
    if key.contains(".prefix_tuning.pool.") {
        return None;
    }
    match key.find(POOL) {
        Some(at) => {
            let rest = &key[at + POOL.len()..];
            let mut parts = rest.splitn(3, '.');
            let (name, _location, leaf) = (parts.next()?, parts.next()?, parts.next()?);
            Some(format!("{}prefix_tuning.{name}.{leaf}", &key[..at]))
        }
        None => Some(key.to_string()),
    }
}

/// The tensors of `owner` by AdapterHub key.
fn owned_tensors(model: &Model, owner: &str) -> Result<BTreeMap<String, Tensor>> {
    let mut out = BTreeMap::new();
    let loras: Vec<String> = module::named_modules(model.root()).into_iter().filter(|(_, m)| m.as_any().downcast_ref::<HubLora>().is_some_and(|l| l.owner == owner)).map(|(p, _)| format!("{p}.")).collect();
    let pool_stem = format!("prefix_tuning.{owner}.");
    let attention = attention_layout(model).0;
    for p in model.named_parameters() {
        if p.owner == Owner::Adapter(owner.to_string()) {
            if let Some(path) = loras.iter().find(|l| p.name.starts_with(l.as_str())) {
                let leaf = &p.name[path.len()..];
                let layer = path.trim_end_matches('.').strip_suffix(&format!(".adapters.{owner}")).unwrap_or(path);
                out.insert(format!("{layer}.loras.{owner}.{leaf}"), detached(&p.tensor)?);
                continue;
            }
            if let Some(at) = p.name.find(".prefix_gates.") {
                out.insert(format!("{}.prefix_tuning.prefix_gates.{}", &p.name[..at], &p.name[at + ".prefix_gates.".len()..]), detached(&p.tensor)?);
                continue;
            }
            if let Some(at) = p.name.find(&pool_stem).filter(|at| *at == 0 || p.name[..*at].ends_with('.')) {
                let leaf = &p.name[at + pool_stem.len()..];
                let t = detached(&p.tensor)?;
                for a in &attention {
                    out.insert(format!("{a}.prefix_tuning.pool.prefix_tunings.{owner}.{LOCATION}.{leaf}"), t.f_detach_copy()?);
                }
                out.insert(format!("{}{POOL}{owner}.{LOCATION}.{leaf}", &p.name[..at]), t);
                continue;
            }
            let key = to_file_key(&p.name);
            // AdapterHub keeps a new norm before the bottleneck under two names.
            if let Some(stem) = key.strip_suffix(".adapter_down.0.weight").or_else(|| key.strip_suffix(".adapter_down.0.bias")) {
                if p.tensor.dim() == 1 && model.adapters.get(owner).is_ok_and(|a| matches!(&a.method, Method::Bottleneck(c) if c.ln_before)) {
                    let leaf = if key.ends_with("weight") { "weight" } else { "bias" };
                    out.insert(format!("{stem}.adapter_norm_before.{leaf}"), detached(&p.tensor)?);
                }
            }
            out.insert(key, detached(&p.tensor)?);
        }
    }
    Ok(out)
}

/// Writes bottleneck adapter `name`, or fusion `name` ("a,b"), to `dir` as AdapterHub does.
pub fn save(model: &Model, name: &str, dir: &Path) -> Result<()> {
    let metadata = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    let (config_file, weights_file, config) = if let Some(f) = model.adapters.fusions.iter().find(|f| f.name == name) {
        let mut m = meta(model, name);
        m.insert("adapter_names".into(), json!(f.adapters));
        m.insert("config".into(), f.config.to_adapterhub());
        (FUSION_CONFIG, FUSION_WEIGHTS, m)
    } else {
        let adapter = model.adapters.get(name)?;
        let config = match &adapter.method {
            Method::Bottleneck(c) => c.to_adapterhub(),
            Method::Union(c) => c.to_adapterhub(),
            other => bail!("adapter '{name}' is a {} adapter; format = \"adapterhub\" writes bottleneck adapters, unions and fusions (save it in PEFT's format)", other.peft_type()),
        };
        let mut m = meta(model, name);
        m.insert("config".into(), config);
        (ADAPTER_CONFIG, ADAPTER_WEIGHTS, m)
    };
    let tensors = owned_tensors(model, name)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    save_safetensors(&dir.join(weights_file), &tensors, metadata)?;
    write_atomic(&dir.join(config_file), serde_json::to_string_pretty(&Value::Object(config))?.as_bytes())?;
    Ok(())
}

fn read_json(path: &Path) -> Result<Map<String, Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    match serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))? {
        Value::Object(m) => Ok(m),
        _ => bail!("{} is not a JSON object", path.display()),
    }
}

/// The weights file of an AdapterHub directory, with their keys as this model's tree names.
fn read_weights(model: &Model, dir: &Path, file: &str, pickle: &str) -> Result<BTreeMap<String, Tensor>> {
    let path = dir.join(file);
    if !path.exists() {
        if dir.join(pickle).exists() {
            let safe = if pickle.contains("fusion") { FUSION_WEIGHTS } else { ADAPTER_WEIGHTS };
            bail!(
                "{} holds only a pickle file ({pickle}); moontune never unpickles. Convert it in Python: load it with `adapters` and save it again with use_safetensors=True, or (prefix tuning, whose shared tensors safetensors refuses there) `save_file({{k: v.clone().contiguous() for k, v in torch.load(\"{pickle}\").items()}}, \"{safe}\")` with safetensors.torch's save_file",
                dir.display()
            );
        }
        bail!("{} has no {file}", dir.display());
    }
    let raw = load_safetensors(&path, model.device())?;
    Ok(raw.into_iter().filter(|(k, _)| !k.contains(".adapter_norm_before.")).filter_map(|(k, t)| Some((to_tree_name(model, &pool_tree_key(&k)?), t))).collect())
}

/// Checks that AdapterHub's metadata fits this model.
fn check_meta(model: &Model, m: &Map<String, Value>, path: &Path) -> Result<()> {
    if let Some(t) = m.get("model_type").and_then(|v| v.as_str()) {
        let ours = model_type(model);
        if t != ours {
            bail!("{} was saved for a '{t}' model; this model is '{ours}' ({})", path.display(), model.architecture);
        }
    }
    if let Some(h) = m.get("hidden_size").and_then(|v| v.as_i64()) {
        if h != model.hidden_size() {
            bail!("{} was saved for hidden size {h}; this model's is {}", path.display(), model.hidden_size());
        }
    }
    Ok(())
}

/// Loads an AdapterHub adapter or fusion directory; the adapter's name is `name` or the one
/// saved. A fusion needs its adapters loaded first. Returns the name it was added under.
pub fn load(model: &mut Model, dir: &Path, name: Option<&str>, trainable: bool) -> Result<String> {
    if dir.join(FUSION_CONFIG).exists() {
        let path = dir.join(FUSION_CONFIG);
        let m = read_json(&path)?;
        check_meta(model, &m, &path)?;
        let config = FusionConfig::from_adapterhub(m.get("config").and_then(|v| v.as_object()).with_context(|| format!("{} has no config object", path.display()))?)?;
        let names: Vec<String> = match m.get("adapter_names") {
            Some(Value::Array(a)) => a.iter().map(|v| v.as_str().map(str::to_string).context("adapter_names must hold names")).collect::<Result<_>>()?,
            _ => m.get("name").and_then(|v| v.as_str()).context("the fusion config names no adapters")?.split(',').map(str::to_string).collect(),
        };
        if let Some(missing) = names.iter().find(|n| model.adapters.get(n).is_err()) {
            bail!("{} fuses adapter '{missing}', which this model does not have; load the fused adapters first", path.display());
        }
        let tensors = read_weights(model, dir, FUSION_WEIGHTS, "pytorch_model_adapter_fusion.bin")?;
        return add_fusion(model, &names, config, Some(&tensors)).with_context(|| format!("loading the fusion in {}", dir.display()));
    }
    let path = dir.join(ADAPTER_CONFIG);
    let m = read_json(&path)?;
    check_meta(model, &m, &path)?;
    let config_object = m.get("config").and_then(|v| v.as_object()).with_context(|| format!("{} has no config object", path.display()))?;
    let bottleneck = matches!(config_object.get("architecture").and_then(|v| v.as_str()), None | Some("bottleneck"));
    let method = if bottleneck {
        Method::Bottleneck(BnConfig::from_adapterhub(config_object).with_context(|| format!("reading {}", path.display()))?)
    } else {
        Method::Union(UnionConfig::from_adapterhub(config_object).with_context(|| format!("reading {}", path.display()))?)
    };
    let saved_name = m.get("name").and_then(|v| v.as_str()).unwrap_or("default").to_string();
    let name = name.map(str::to_string).unwrap_or(saved_name.clone());
    let raw = read_weights(model, dir, ADAPTER_WEIGHTS, "pytorch_adapter.bin")?;
    // The file's keys carry the name it was saved under, right after the point's name
    // (`….output_adapters.<name>.…`, `….adapters.<name>.…`, `invertible_adapters.<name>.…`,
    // `….prefix_gates.<name>.…`, `prefix_tuning.<name>.…`).
    let rename = |k: String| -> String {
        for container in ["adapters", "prefix_gates", "prefix_tuning"] {
            let from = format!("{container}.{saved_name}.");
            if let Some(at) = k.find(&from).filter(|at| *at == 0 || k[..*at].ends_with('.') || container == "adapters") {
                return format!("{}{container}.{name}.{}", &k[..at], &k[at + from.len()..]);
            }
        }
        k
    };
    let tensors: BTreeMap<String, Tensor> = raw.into_iter().map(|(k, t)| (rename(k), t)).collect();
    let loaded = match method {
        Method::Bottleneck(c) => add_bottleneck(model, &name, c, Some(&tensors), trainable),
        Method::Union(c) => add_union(model, &name, c, Some(&tensors), trainable),
        _ => unreachable!("an AdapterHub config is a bottleneck adapter or a union"),
    };
    loaded.with_context(|| format!("loading the adapter in {}", dir.display()))?;
    Ok(name)
}
