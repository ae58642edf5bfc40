//! PEFT's adapter files both ways: a directory with `adapter_config.json` and
//! `adapter_model.safetensors` whose keys are the base model's module names under
//! `base_model.model.` without the adapter's name (`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`),
//! so that `PeftModel.from_pretrained` loads what moontune saves and moontune loads what PEFT saves.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::rc::Rc;

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use tch::{Device, Tensor};

use super::config::{Ia3Config, LoraConfig, PrefixConfig, PromptConfig, Source};
use super::custom::{CustomConfig, CustomMethod};
use super::inject::{add, adapter_parameters, bias_key, file_key, PROMPT_KEY};
use super::prompt::{PrefixTuning, PromptTuning};
use super::{default_ia3_targets, default_lora_targets, linear, task_type, Method};
use crate::io::{load_safetensors, save_safetensors, write_atomic};
use crate::models::model::{Family, Model};
use crate::nn::module;
use crate::nn::linear::Layout;

const PREFIX: &str = "base_model.model.";

/// Writes adapter `name` to `dir` as PEFT does.
pub fn save(model: &Model, name: &str, dir: &Path) -> Result<()> {
    let adapter = model.adapters.get(name)?;
    if matches!(adapter.method, Method::Bottleneck(_) | Method::Union(_)) {
        bail!("adapter '{name}' is a {} adapter, which PEFT's format cannot hold; save it with format = \"adapterhub\"", adapter.method.peft_type());
    }
    let detached = |t: &Tensor| -> Result<Tensor> { Ok(t.f_detach()?.f_to_device(Device::Cpu)?.f_contiguous()?) };
    let (tensors, config) = if adapter.method.is_prompt() {
        prompt_file(model, name, &adapter.method, &detached)?
    } else {
        let mut tensors = BTreeMap::new();
        for p in adapter_parameters(model, name) {
            let key = file_key(&p.name, name).with_context(|| format!("'{}' is not under an adapter", p.name))?;
            tensors.insert(format!("{PREFIX}{key}"), detached(&p.tensor)?);
        }
        let params = model.named_parameters();
        for b in &adapter.biases {
            let p = params.iter().find(|p| &p.name == b).with_context(|| format!("bias '{b}' vanished"))?;
            tensors.insert(format!("{PREFIX}{}", bias_key(&adapter.layers, b)), detached(&p.tensor)?);
        }
        let mut fan_in_fan_out = false;
        for layer in &adapter.layers {
            fan_in_fan_out |= linear(model, layer)?.layout == Layout::InOut;
        }
        let config = match &adapter.method {
            Method::Lora(c) => c.to_peft(&adapter.layers, fan_in_fan_out, task_type(model)),
            Method::Ia3(c) => c.to_peft(&adapter.layers, fan_in_fan_out, task_type(model)),
            Method::Custom(c) => c.to_peft(&adapter.layers, task_type(model)),
            _ => bail!("internal: a prompt method"),
        };
        (tensors, config)
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    save_safetensors(&dir.join("adapter_model.safetensors"), &tensors, Some(HashMap::from([("format".to_string(), "pt".to_string())])))?;
    write_atomic(&dir.join("adapter_config.json"), serde_json::to_string_pretty(&Value::Object(config))?.as_bytes())?;
    Ok(())
}

/// A prompt or prefix adapter's one tensor (prefix tuning's MLP folded away) and config.
fn prompt_file(model: &Model, name: &str, method: &Method, detached: &dyn Fn(&Tensor) -> Result<Tensor>) -> Result<(BTreeMap<String, Tensor>, Map<String, Value>)> {
    let root = model.root();
    let module = module::get_submodule(root, &format!("prompt_encoder.{name}"))?;
    let (layers, kv_heads, head_dim) = model.kv_layout()?;
    let (table, config) = match method {
        Method::Prompt(c) => {
            let p = module.as_any().downcast_ref::<PromptTuning>().context("not a prompt-tuning module")?;
            (p.embedding.shallow_clone(), c.to_peft(model.hidden_size(), (layers, query_heads(model)), task_type(model)))
        }
        Method::Prefix(c) => {
            let p = module.as_any().downcast_ref::<PrefixTuning>().context("not a prefix-tuning module")?;
            let _guard = tch::no_grad_guard();
            (p.table()?, c.to_peft(kv_heads * head_dim, (layers, kv_heads), task_type(model)))
        }
        _ => bail!("internal: not a prompt method"),
    };
    Ok((BTreeMap::from([(PROMPT_KEY.to_string(), detached(&table)?)]), config))
}

/// The attention heads a prompt-tuning config records (PEFT writes the query heads).
pub fn query_heads(model: &Model) -> i64 {
    match &model.family {
        Family::Llama(m) => m.config.num_heads,
        Family::LlamaClassifier(m) => m.config.num_heads,
        Family::Gpt2(m) => m.config.n_head,
        Family::Bert(m) => m.config.num_heads,
        Family::BertClassifier(m) => m.bert.config.num_heads,
    }
}

/// Finds a method defined outside the built-ins by its `peft_type`.
pub type Resolver<'a> = &'a dyn Fn(&str) -> Option<Rc<dyn CustomMethod>>;

/// The method an adapter_config.json describes.
pub fn read_config(model: &Model, dir: &Path, custom: Resolver) -> Result<Method> {
    let path = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let json: Value = serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
    let Value::Object(map) = json else { bail!("{} is not a JSON object", path.display()) };
    let peft_type = map.get("peft_type").and_then(|v| v.as_str()).with_context(|| format!("{} has no peft_type", path.display()))?.to_string();
    let method = match peft_type.as_str() {
        "LORA" => Method::Lora(LoraConfig::parse(map, Source::Peft, default_lora_targets(model))?),
        "IA3" => Method::Ia3(Ia3Config::parse(map, Source::Peft, default_ia3_targets(model))?),
        "PROMPT_TUNING" => Method::Prompt(PromptConfig::parse(map, Source::Peft)?),
        "PREFIX_TUNING" => Method::Prefix(PrefixConfig::parse(map, Source::Peft)?),
        other => match custom(other) {
            Some(method) => Method::Custom(CustomConfig::parse(method, map, Source::Peft)?),
            None => bail!("{}: peft_type '{other}' is not supported (supported: LORA, IA3, PROMPT_TUNING, PREFIX_TUNING, and methods registered with mt.peft.register)", path.display()),
        },
    };
    Ok(method)
}

/// Loads the adapter PEFT (or moontune) saved in `dir` as `name`.
pub fn load(model: &mut Model, dir: &Path, name: &str, trainable: bool, custom: Resolver) -> Result<()> {
    if !dir.is_dir() {
        bail!("{} is not a directory (an adapter is a directory with adapter_config.json and adapter_model.safetensors)", dir.display());
    }
    let method = read_config(model, dir, custom)?;
    let file = dir.join("adapter_model.safetensors");
    if !file.exists() {
        if dir.join("adapter_model.bin").exists() {
            bail!("{} holds only a pickle adapter (adapter_model.bin); moontune never unpickles. Save it with safe_serialization=True", dir.display());
        }
        bail!("{} has no adapter_model.safetensors", dir.display());
    }
    let raw = load_safetensors(&file, model.device())?;
    let mut tensors = BTreeMap::new();
    for (key, t) in raw {
        let stripped = match key.strip_prefix(PREFIX) {
            Some(s) => s.to_string(),
            None if key == PROMPT_KEY => key,
            None => bail!("{}: tensor '{key}' does not start with '{PREFIX}' as PEFT's keys do", file.display()),
        };
        tensors.insert(stripped, t);
    }
    add(model, name, method, Some(&tensors), trainable).with_context(|| format!("loading the adapter in {}", dir.display()))
}
