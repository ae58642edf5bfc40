//! `mt.peft` and the adapter methods of a model handle: adding LoRA and IA3 adapters, loading
//! and saving PEFT's files, switching, merging and combining adapters. Conversions only; the
//! logic is in src/peft.

use std::path::Path;
use std::rc::Rc;

use mlua::{AnyUserData, Function, Lua, LuaSerdeExt, MultiValue, Table, UserDataMethods, Value};
use serde::Deserialize;

use super::args::{failure, misuse, options, split_values, OrMisuse};
use super::tokenizer::LuaTokenizer;
use super::callbacks::{function, method, method_ud};
use super::models::LuaModule;
use super::peft_method::{self, LuaMethod};
use crate::models::Model;
use crate::peft::config::{PromptInit, Source};
use crate::peft::custom::{CustomConfig, CustomMethod};
use crate::peft::{self, adapterhub, combine, files, inject, merge, quantize};

fn model_arg(call: &str, v: &AnyUserData) -> mlua::Result<mlua::UserDataRef<LuaModule>> {
    let handle = v.borrow::<LuaModule>().map_err(|_| misuse(call, "the first argument must be a model (from mt.models.load)"))?;
    handle.is_root(call)?;
    Ok(handle)
}

/// An options table as JSON, with `name` taken out (default "default").
fn config_options(lua: &Lua, call: &str, opts: Option<Table>) -> mlua::Result<(String, serde_json::Map<String, serde_json::Value>)> {
    let json: serde_json::Value = match opts {
        Some(t) => lua.from_value(Value::Table(t)).map_err(|e| misuse(call, format!("options: {e}")))?,
        None => serde_json::Value::Object(Default::default()),
    };
    let mut map = match json {
        serde_json::Value::Object(m) => m,
        serde_json::Value::Array(a) if a.is_empty() => Default::default(),
        other => return Err(misuse(call, format!("expected a table of named options, got {other}"))),
    };
    let name = match map.remove("name") {
        None => "default".to_string(),
        Some(serde_json::Value::String(s)) => s,
        Some(other) => return Err(misuse(call, format!("option 'name' must be a string, got {other}"))),
    };
    Ok((name, map))
}

/// `mt.peft.lora(model, opts)`, `ia3`, `prompt_tuning` and `prefix_tuning`.
fn add_method(lua: &Lua, call: &str, peft_type: &str, model: AnyUserData, opts: Option<Table>) -> mlua::Result<AnyUserData> {
    // A tokenizer (prompt tuning's text init) is a Lua value, not a setting.
    let (opts, values) = split_values(lua, opts, &["tokenizer"])?;
    let (name, map) = config_options(lua, call, opts)?;
    {
        let handle = model_arg(call, &model)?;
        let mut m = handle.model_mut(call)?;
        let mut method = peft::method_from_options(&m, peft_type, map).or_misuse(call)?;
        if let peft::Method::Prompt(c) = &mut method {
            if let PromptInit::Text(text) = &c.init {
                let tok = match &values[0] {
                    Value::UserData(ud) => ud.borrow::<LuaTokenizer>().map_err(|_| misuse(call, "tokenizer must be a tokenizer (mt.tokenizer.load)"))?,
                    _ => return Err(misuse(call, "init = \"text\" needs the model's tokenizer ({ tokenizer = tok })")),
                };
                // As PEFT: the text's ids with the tokenizer's special tokens.
                c.init_ids = Some(tok.0.encode(text, true).or_misuse(call)?.0.into_iter().map(i64::from).collect());
            }
        }
        inject::add(&mut m, &name, method, None, true).or_misuse(call)?;
    }
    Ok(model)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LoadOptions {
    /// The adapter's name on this model (default "default").
    name: Option<String>,
    /// Whether it trains once active (default true; false loads it frozen).
    trainable: Option<bool>,
}

fn load(lua: &Lua, (model, dir, opts): (AnyUserData, String, Option<Table>)) -> mlua::Result<MultiValue> {
    let call = "peft.load";
    let o: LoadOptions = options(lua, call, opts)?;
    let handle = model_arg(call, &model)?;
    let mut m = handle.model_mut(call)?;
    if !Path::new(&dir).exists() {
        return failure(lua, format!("{call}: {dir} does not exist"));
    }
    if adapterhub::is_adapterhub_dir(Path::new(&dir)) {
        let name = adapterhub::load(&mut m, Path::new(&dir), o.name.as_deref(), o.trainable.unwrap_or(true)).or_misuse(call)?;
        drop(m);
        drop(handle);
        return Ok(MultiValue::from_iter([Value::UserData(model), Value::String(lua.create_string(&name)?)]));
    }
    let name = o.name.unwrap_or_else(|| "default".into());
    files::load(&mut m, Path::new(&dir), &name, o.trainable.unwrap_or(true), &|t| resolve(lua, t)).or_misuse(call)?;
    drop(m);
    drop(handle);
    Ok(MultiValue::from_iter([Value::UserData(model)]))
}

/// A method registered in Lua under `name`, if there is one.
fn resolve(lua: &Lua, name: &str) -> Option<Rc<dyn CustomMethod>> {
    let registered = peft_method::methods(lua).ok()?.contains_key(name).ok()?;
    registered.then(|| Rc::new(LuaMethod { lua: lua.weak(), name: name.to_string() }) as Rc<dyn CustomMethod>)
}

/// `mt.peft.register(def)`: defines (or, on a reload, redefines) an adapter method.
fn register(lua: &Lua, def: Table) -> mlua::Result<String> {
    let call = "peft.register";
    let name: String = def.get::<Option<String>>("name")?.ok_or_else(|| misuse(call, "the definition needs a name (its peft_type)"))?;
    if name.is_empty() || ["LORA", "IA3", "PROMPT_TUNING", "PREFIX_TUNING", "BOTTLENECK"].contains(&name.as_str()) {
        return Err(misuse(call, format!("'{name}' cannot name a new method (it is empty or a built-in's)")));
    }
    for key in ["init", "forward"] {
        if !matches!(def.get::<Value>(key)?, Value::Function(_)) {
            return Err(misuse(call, format!("method '{name}' needs {key} = function")));
        }
    }
    for pair in def.pairs::<String, Value>() {
        let (k, _) = pair?;
        if !["name", "init", "forward", "merge", "unmerge"].contains(&k.as_str()) {
            return Err(misuse(call, format!("unknown field '{k}' (a method has name, init, forward, merge, unmerge)")));
        }
    }
    peft_method::methods(lua)?.set(name.as_str(), def)?;
    Ok(name)
}

/// `mt.peft.add(model, method, opts)`: an adapter of a registered method.
fn add_custom(lua: &Lua, (model, method, opts): (AnyUserData, String, Option<Table>)) -> mlua::Result<AnyUserData> {
    let call = "peft.add";
    let resolved = resolve(lua, &method).ok_or_else(|| misuse(call, format!("no method '{method}' is registered (mt.peft.register)")))?;
    let (name, map) = config_options(lua, call, opts)?;
    {
        let handle = model_arg(call, &model)?;
        let mut m = handle.model_mut(call)?;
        let config = CustomConfig::parse(resolved, map, Source::Options).or_misuse(call)?;
        inject::add(&mut m, &name, peft::Method::Custom(config), None, true).or_misuse(call)?;
    }
    Ok(model)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CombineOptions {
    /// The new adapter's name (required).
    name: Option<String>,
    /// One weight per adapter (default 1 each).
    weights: Option<Vec<f64>>,
    /// "linear" (default), "cat" or "svd".
    how: Option<String>,
    /// The rank for "svd" (default: the largest of the adapters').
    rank: Option<i64>,
}

fn combine_lua(lua: &Lua, (model, names, opts): (AnyUserData, Vec<String>, Option<Table>)) -> mlua::Result<AnyUserData> {
    let call = "peft.combine";
    let o: CombineOptions = options(lua, call, opts)?;
    let new_name = o.name.ok_or_else(|| misuse(call, "give the new adapter a name ({ name = ... })"))?;
    let how = combine::How::parse(o.how.as_deref().unwrap_or("linear")).or_misuse(call)?;
    let weights = o.weights.unwrap_or_else(|| vec![1.0; names.len()]);
    {
        let handle = model_arg(call, &model)?;
        let mut m = handle.model_mut(call)?;
        combine::combine(&mut m, &names, &weights, how, &new_name, o.rank).or_misuse(call)?;
    }
    Ok(model)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LoraPlusOptions {
    /// The learning rate of A matrices and the other trainable parameters.
    lr: Option<f64>,
    /// B matrices learn at ratio × lr (LoRA+ suggests 16).
    ratio: Option<f64>,
}

/// LoRA+ (Hayou et al. 2024): two parameter groups, B matrices at `ratio × lr`.
fn loraplus_param_groups(lua: &Lua, (model, opts): (AnyUserData, Option<Table>)) -> mlua::Result<Table> {
    let call = "peft.loraplus_param_groups";
    let o: LoraPlusOptions = options(lua, call, opts)?;
    let lr = o.lr.ok_or_else(|| misuse(call, "give lr"))?;
    let ratio = o.ratio.ok_or_else(|| misuse(call, "give ratio (B's learning rate over A's; LoRA+ suggests 16)"))?;
    let handle = model_arg(call, &model)?;
    let params: Vec<_> = handle.model(call)?.named_parameters().into_iter().filter(|p| p.tensor.requires_grad()).collect();
    if params.is_empty() {
        return Err(misuse(call, "the model has no trainable parameters (add an adapter first)"));
    }
    let (a, b) = (lua.create_table()?, lua.create_table()?);
    for p in params {
        let is_b = p.name.ends_with(".lora_B.weight");
        let wrapped = handle.wrap_param(lua, p)?;
        if is_b { b.push(wrapped)? } else { a.push(wrapped)? }
    }
    let groups = lua.create_table()?;
    for (list, rate) in [(a, lr), (b, lr * ratio)] {
        if list.raw_len() > 0 {
            let g = lua.create_table()?;
            g.set("params", list)?;
            g.set("lr", rate)?;
            groups.push(g)?;
        }
    }
    Ok(groups)
}

fn summary_table(lua: &Lua, summary: &[peft::AdapterSummary]) -> mlua::Result<Table> {
    let rows = lua.create_table()?;
    for s in summary.iter().cloned() {
        let t = lua.create_table()?;
        t.set("name", s.name)?;
        t.set("method", s.method)?;
        t.set("active", s.active)?;
        t.set("parameters", s.parameters)?;
        t.set("trainable", s.trainable)?;
        t.set("norm", s.norm)?;
        t.set("grad_norm", s.grad_norm)?;
        rows.push(t)?;
    }
    Ok(rows)
}

/// `mt.peft.summary(model)`: prints one line per adapter and returns the rows.
fn summary(lua: &Lua, model: AnyUserData) -> mlua::Result<Table> {
    let call = "peft.summary";
    let handle = model_arg(call, &model)?;
    let summary = peft::summary(&*handle.model(call)?).or_misuse(call)?;
    let rows = summary_table(lua, &summary)?;
    let print: Function = lua.globals().get("print")?;
    let mut lines = vec![format!("{:<12} {:<6} {:<7} {:>12} {:>12} {:>10} {:>10}", "adapter", "method", "active", "parameters", "trainable", "norm", "grad norm")];
    for s in &summary {
        let grad = s.grad_norm.map(|g| format!("{g:.4}")).unwrap_or_else(|| "-".into());
        lines.push(format!("{:<12} {:<6} {:<7} {:>12} {:>12} {:>10.4} {:>10}", s.name, s.method, if s.active { "yes" } else { "no" }, s.parameters, s.trainable, s.norm, grad));
    }
    print.call::<()>(lines.join("\n"))?;
    Ok(rows)
}

/// Adapter names given as one name or a list.
fn names_arg(call: &str, v: Value) -> mlua::Result<Vec<String>> {
    let name = |v: Value, what: &str| match v {
        Value::String(s) => s.to_str().map(|s| s.to_string()).map_err(|_| misuse(call, format!("{what} is not UTF-8 text"))),
        other => Err(misuse(call, format!("{what} must be an adapter name (a string), got {}", super::args::describe(&other)))),
    };
    match v {
        Value::Nil => Ok(Vec::new()),
        Value::Table(t) => t.sequence_values::<Value>().enumerate().map(|(i, v)| name(v?, &format!("name {} of the list", i + 1))).collect(),
        other => name(other, "the adapter name").map(|n| vec![n]),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SaveAdapterOptions {
    /// Which adapter (default: the only one, or the only active one); with format
    /// "adapterhub" also a fusion ("a,b").
    name: Option<String>,
    /// "peft" (default) or "adapterhub" (bottleneck adapters and fusions).
    format: Option<String>,
}

/// A method that changes the model's adapters, taking adapter names (one, a list, or none) if
/// `takes_names`, else no argument, and returning the model.
fn changing<M: UserDataMethods<LuaModule>>(methods: &mut M, name: &'static str, takes_names: bool, f: impl Fn(&mut Model, Vec<String>) -> anyhow::Result<()> + 'static) {
    let call = format!("model.{name}");
    method_ud(methods, name, call.clone(), move |_, ud, names: Value| {
        if !takes_names && !names.is_nil() {
            return Err(misuse(&call, format!("takes no arguments, got {}", super::args::describe(&names))));
        }
        let names = names_arg(&call, names)?;
        {
            let this = ud.borrow::<LuaModule>()?;
            this.is_root(&call)?;
            let mut m = this.model_mut(&call)?;
            f(&mut m, names).or_misuse(&call)?;
        }
        Ok(ud)
    });
}

pub fn add_model_methods<M: UserDataMethods<LuaModule>>(methods: &mut M) {
    method(methods, "save_adapter", "model.save_adapter", |lua, this, (dir, opts): (String, Option<Table>)| {
        let call = "model.save_adapter";
        this.is_root(call)?;
        let o: SaveAdapterOptions = options(lua, call, opts)?;
        let m = this.model(call)?;
        let name = match o.name {
            Some(n) => n,
            None => m.adapters.default_name().or_misuse(call)?,
        };
        // Bottleneck adapters, unions and fusions have no PEFT format: AdapterHub's is theirs.
        let adapterhub_only = m.adapters.fusions.iter().any(|f| f.name == name) || m.adapters.get(&name).is_ok_and(|a| matches!(a.method, peft::Method::Bottleneck(_) | peft::Method::Union(_)));
        let saved = match o.format.as_deref() {
            None if adapterhub_only => adapterhub::save(&m, &name, Path::new(&dir)),
            None | Some("peft") => m.adapters.get(&name).map(|_| ()).and_then(|_| files::save(&m, &name, Path::new(&dir))),
            Some("adapterhub") => adapterhub::save(&m, &name, Path::new(&dir)),
            Some(other) => return Err(misuse(call, format!("format must be \"peft\" or \"adapterhub\", got '{other}'"))),
        };
        match saved {
            Ok(()) => Ok(MultiValue::from_iter([Value::Boolean(true)])),
            Err(e) => failure(lua, format!("{call}: {e:#}")),
        }
    });
    changing(methods, "set_adapter", true, |m, names| peft::set_adapter(m, &names));
    changing(methods, "train_adapter", true, |m, names| peft::train_adapter(m, &names));
    changing(methods, "delete_adapter", true, |m, names| match names.as_slice() {
        [name] => peft::delete_adapter(m, name),
        _ => anyhow::bail!("give one adapter name"),
    });
    changing(methods, "merge_adapter", true, |m, names| merge::merge_adapter(m, if names.is_empty() { None } else { Some(names) }));
    changing(methods, "unmerge_adapter", false, |m, _| merge::unmerge_adapter(m));
    changing(methods, "merge_and_unload", false, |m, _| merge::merge_and_unload(m));
    method(methods, "disable_adapters", "model.disable_adapters", |_, this, (f, args): (Function, MultiValue)| {
        let call = "model.disable_adapters";
        this.is_root(call)?;
        let before = std::mem::replace(&mut this.model_mut(call)?.adapters.disabled, true);
        let result = f.call::<MultiValue>(args);
        this.model_mut(call)?.adapters.disabled = before;
        result
    });
    method(methods, "adapters", "model.adapters", |lua, this, ()| {
        let call = "model.adapters";
        this.is_root(call)?;
        let summary = peft::summary(&*this.model(call)?).or_misuse(call)?;
        summary_table(lua, &summary)
    });
    method(methods, "memory_report", "model.memory_report", |lua, this, opts: Option<Table>| {
        let call = "model.memory_report";
        this.is_root(call)?;
        let (_, values) = split_values(lua, opts, &["optimizer"])?;
        let r = quantize::memory_report(&*this.model(call)?).or_misuse(call)?;
        let t = lua.create_table()?;
        t.set("quantized_weights", r.quantized)?;
        t.set("constants", r.constants)?;
        t.set("weights", r.weights)?;
        t.set("adapters", r.adapters)?;
        if let Value::UserData(ud) = &values[0] {
            let opt = ud.borrow::<super::optim::LuaOptimizer>().map_err(|_| misuse(call, "optimizer must be an optimizer (mt.optim.adamw, ...)"))?;
            let state = opt.inner.state_dict().or_misuse(call)?;
            let bytes: i64 = state.params.values().flat_map(|s| s.tensors.values()).map(|t| t.numel() as i64 * t.kind().elt_size_in_bytes() as i64).sum();
            t.set("optimizer_state", bytes)?;
        }
        Ok(t)
    });
    method(methods, "active_adapters", "model.active_adapters", |_, this, ()| {
        let call = "model.active_adapters";
        this.is_root(call)?;
        Ok(this.model(call)?.adapters.active.clone())
    });
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct QuantizeLuaOptions {
    /// Only 4 is supported.
    bits: Option<i64>,
    /// "nf4" (default) or "fp4".
    r#type: Option<String>,
    /// Quantise the absmax constants too (default true).
    double_quant: Option<bool>,
    /// Values per absmax (default 64).
    block_size: Option<i64>,
    /// The dtype layers compute in (default "bf16").
    compute_dtype: Option<String>,
    /// Layers left in full precision (default { "lm_head" }).
    skip: Option<Vec<String>>,
}

fn quantize_lua(lua: &Lua, (model, opts): (AnyUserData, Option<Table>)) -> mlua::Result<AnyUserData> {
    let call = "peft.quantize";
    let o: QuantizeLuaOptions = options(lua, call, opts)?;
    if o.bits.unwrap_or(4) != 4 {
        return Err(misuse(call, format!("bits = {} is not supported (4-bit NF4 and FP4 are)", o.bits.unwrap_or(4))));
    }
    let compute = crate::tensor::parse_dtype(o.compute_dtype.as_deref().unwrap_or("bf16")).or_misuse(call)?;
    let q = quantize::QuantizeOptions {
        format: crate::nn::fourbit::Format::parse(o.r#type.as_deref().unwrap_or("nf4")).or_misuse(call)?,
        block: o.block_size.unwrap_or(64),
        double_quant: o.double_quant.unwrap_or(true),
        compute,
        skip: o.skip.unwrap_or_else(|| vec!["lm_head".to_string()]),
    };
    {
        let handle = model_arg(call, &model)?;
        let mut m = handle.model_mut(call)?;
        quantize::quantize(&mut m, &q).or_misuse(call)?;
    }
    Ok(model)
}

pub fn create_table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("lora", function(lua, "peft.lora", |lua, (model, opts): (AnyUserData, Option<Table>)| add_method(lua, "peft.lora", "LORA", model, opts))?)?;
    t.set("ia3", function(lua, "peft.ia3", |lua, (model, opts): (AnyUserData, Option<Table>)| add_method(lua, "peft.ia3", "IA3", model, opts))?)?;
    t.set("prompt_tuning", function(lua, "peft.prompt_tuning", |lua, (model, opts): (AnyUserData, Option<Table>)| add_method(lua, "peft.prompt_tuning", "PROMPT_TUNING", model, opts))?)?;
    t.set("prefix_tuning", function(lua, "peft.prefix_tuning", |lua, (model, opts): (AnyUserData, Option<Table>)| add_method(lua, "peft.prefix_tuning", "PREFIX_TUNING", model, opts))?)?;
    t.set("quantize", function(lua, "peft.quantize", quantize_lua)?)?;
    t.set("register", function(lua, "peft.register", register)?)?;
    t.set("add", function(lua, "peft.add", add_custom)?)?;
    t.set("load", function(lua, "peft.load", load)?)?;
    t.set("combine", function(lua, "peft.combine", combine_lua)?)?;
    t.set("loraplus_param_groups", function(lua, "peft.loraplus_param_groups", loraplus_param_groups)?)?;
    t.set("summary", function(lua, "peft.summary", summary)?)?;
    t.set("bottleneck", function(lua, "peft.bottleneck", |lua, (model, opts): (AnyUserData, Option<Table>)| add_method(lua, "peft.bottleneck", "BOTTLENECK", model, opts))?)?;
    t.set("union", function(lua, "peft.union", |lua, (model, opts): (AnyUserData, Option<Table>)| add_method(lua, "peft.union", "UNION", model, opts))?)?;
    super::modular::add_functions(lua, &t)?;
    Ok(t)
}
