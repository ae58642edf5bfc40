//! `mt.models`: Hugging Face models as userdata — `load(dir, opts)`, `new(arch, config, opts)`,
//! and on a model `forward{...}`, `generate(ids, opts)`, parameters by Hugging Face name,
//! `train`/`eval`, `freeze`/`unfreeze`, `to{...}`, `save(dir)`. A model that cannot be loaded
//! (missing, truncated or pickle-only files, a config that does not fit the weights) is
//! `nil, message`; misuse raises.

use std::path::Path;

use mlua::{Function, Lua, LuaSerdeExt, MultiValue, Table, UserData, UserDataMethods, Value};
use serde::Deserialize;
use tch::{Device, Kind, Tensor};

use super::args::{describe, failure, misuse, options, OrMisuse};
use super::tensor::{optional_tensor_arg, tensor_arg, wrap};
use super::tokenizer::LuaTokenizer;
use crate::models::bert::mean_pool;
use crate::models::cache::KvCache;
use crate::models::generate::{generate, GenerateOptions};
use crate::models::{ForwardInput, Model};
use crate::tensor::dtype::is_floating;
use crate::tensor::{parse_device, parse_dtype};

pub struct LuaModel(pub Model);

/// A key/value cache for incremental decoding with `forward{ ..., cache = c }`.
pub struct LuaCache(pub std::cell::RefCell<KvCache>);

impl UserData for LuaCache {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("len", |_, this, ()| Ok(this.0.borrow().len()));
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LoadOptions {
    /// Convert floating-point weights to this dtype (default: as stored).
    dtype: Option<String>,
    /// Where to put the model (default "cpu").
    device: Option<String>,
}

fn placement(call: &str, o: &LoadOptions) -> mlua::Result<(Option<Kind>, Device)> {
    let kind = o.dtype.as_deref().map(parse_dtype).transpose().or_misuse(call)?;
    let device = o.device.as_deref().map(parse_device).transpose().or_misuse(call)?.unwrap_or(Device::Cpu);
    Ok((kind, device))
}

fn track_grads(model: &Model, on: bool) -> mlua::Result<()> {
    for (_, p) in &model.params {
        if is_floating(p.kind()) {
            let mut p = p.shallow_clone();
            let _ = p.f_requires_grad_(on).or_misuse("model")?;
        }
    }
    Ok(())
}

fn load(lua: &Lua, (dir, opts): (String, Option<Table>)) -> mlua::Result<MultiValue> {
    let call = "models.load";
    let o: LoadOptions = options(lua, call, opts)?;
    let (kind, device) = placement(call, &o)?;
    match Model::load(Path::new(&dir), kind, device) {
        Ok(model) => {
            track_grads(&model, true)?;
            Ok(MultiValue::from_iter([Value::UserData(lua.create_userdata(LuaModel(model))?)]))
        }
        Err(e) => failure(lua, format!("models.load: {e:#}")),
    }
}

fn new(lua: &Lua, (arch, config, opts): (String, Table, Option<Table>)) -> mlua::Result<LuaModel> {
    let call = "models.new";
    let o: LoadOptions = options(lua, call, opts)?;
    let (kind, device) = placement(call, &o)?;
    let json: serde_json::Value = lua.from_value(Value::Table(config)).map_err(|e| misuse(call, format!("config: {e}")))?;
    let serde_json::Value::Object(map) = json else { return Err(misuse(call, "config must be a table of keys")) };
    let model = Model::new(&arch, map, kind.unwrap_or(Kind::Float), device).or_misuse(call)?;
    track_grads(&model, true)?;
    Ok(LuaModel(model))
}

fn optional_tensor(call: &str, table: &Table, key: &str) -> mlua::Result<Option<Tensor>> {
    optional_tensor_arg(&format!("{call}: {key}"), &table.get::<Value>(key)?)
}

fn forward(lua: &Lua, model: &Model, args: Table) -> mlua::Result<Table> {
    let call = "model.forward";
    const KEYS: [&str; 7] = ["input_ids", "attention_mask", "position_ids", "token_type_ids", "labels", "cache", "output_hidden_states"];
    for pair in args.pairs::<String, Value>() {
        let (k, _) = pair?;
        if !KEYS.contains(&k.as_str()) {
            return Err(misuse(call, format!("unknown key '{k}' (accepted: {})", KEYS.join(", "))));
        }
    }
    let output_hidden_states = match args.get::<Value>("output_hidden_states")? {
        Value::Nil => false,
        Value::Boolean(b) => b,
        other => return Err(misuse(call, format!("output_hidden_states must be a boolean, got {}", describe(&other)))),
    };
    let input = ForwardInput {
        input_ids: optional_tensor(call, &args, "input_ids")?,
        attention_mask: optional_tensor(call, &args, "attention_mask")?,
        position_ids: optional_tensor(call, &args, "position_ids")?,
        token_type_ids: optional_tensor(call, &args, "token_type_ids")?,
        labels: optional_tensor(call, &args, "labels")?,
        output_hidden_states,
    };
    let out = match args.get::<Value>("cache")? {
        Value::Nil => model.forward(&input, None),
        Value::UserData(ud) => {
            let cache = ud.borrow::<LuaCache>().map_err(|_| misuse(call, "cache must come from model:new_cache()"))?;
            let mut cache = cache.0.try_borrow_mut().map_err(|_| misuse(call, "the cache is in use"))?;
            model.forward(&input, Some(&mut cache))
        }
        other => return Err(misuse(call, format!("cache must come from model:new_cache(), got {}", describe(&other)))),
    }
    .or_misuse(call)?;
    let t = lua.create_table()?;
    for (name, value) in [("logits", out.logits), ("loss", out.loss), ("last_hidden_state", out.last_hidden_state), ("pooler_output", out.pooler_output)] {
        if let Some(v) = value {
            t.set(name, wrap(lua, v)?)?;
        }
    }
    Ok(t)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GenerateLuaOptions {
    /// New tokens at most (default 20).
    max_new_tokens: Option<i64>,
    /// Sample instead of greedy decoding (default: true if temperature, top_k or top_p is given).
    do_sample: Option<bool>,
    temperature: Option<f64>,
    top_k: Option<i64>,
    top_p: Option<f64>,
    /// Penalty > 1 discourages tokens already present (transformers' repetition_penalty).
    repetition_penalty: Option<f64>,
    /// Token ids that end a row (default: the config's eos_token_id).
    stop_ids: Option<Vec<i64>>,
    /// Strings that end a row once its generated text contains one (needs `tokenizer`).
    stop_strings: Option<Vec<String>>,
    /// Fills finished rows (default: pad_token_id, else the first stop id, else 0).
    pad_id: Option<i64>,
    /// Seeds the sampler (libtorch's generator) before generating.
    seed: Option<i64>,
}

fn config_ids(model: &Model, key: &str) -> Vec<i64> {
    match model.config.json.get(key) {
        Some(serde_json::Value::Number(n)) => n.as_i64().into_iter().collect(),
        Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_i64()).collect(),
        _ => Vec::new(),
    }
}

/// `model:generate(ids, { max_new_tokens =, ..., tokenizer =, attention_mask =, on_token = })`.
fn generate_lua(lua: &Lua, model: &Model, ids: Value, opts: Option<Table>) -> mlua::Result<Value> {
    let call = "model.generate";
    let ids = tensor_arg(call, &ids)?;
    let (tokenizer, mask, on_token) = match &opts {
        Some(t) => {
            let tok: Value = t.get("tokenizer")?;
            let mask = optional_tensor(call, t, "attention_mask")?;
            let cb: Option<Function> = t.get("on_token").map_err(|_| misuse(call, "on_token must be a function"))?;
            for key in ["tokenizer", "attention_mask", "on_token"] {
                t.raw_set(key, Value::Nil)?;
            }
            (tok, mask, cb)
        }
        None => (Value::Nil, None, None),
    };
    let o: GenerateLuaOptions = options(lua, call, opts.clone())?;
    let sampling_asked = o.temperature.is_some() || o.top_k.is_some() || o.top_p.is_some();
    let stop_ids = o.stop_ids.unwrap_or_else(|| config_ids(model, "eos_token_id"));
    let pad_id = o.pad_id.or_else(|| config_ids(model, "pad_token_id").first().copied()).or_else(|| stop_ids.first().copied()).unwrap_or(0);
    let temperature = o.temperature.unwrap_or(1.0);
    if temperature < 0.0 || o.top_p.is_some_and(|p| !(0.0..=1.0).contains(&p)) || o.top_k.is_some_and(|k| k < 1) {
        return Err(misuse(call, "need temperature ≥ 0, top_p in [0, 1] and top_k ≥ 1"));
    }
    let g = GenerateOptions {
        max_new_tokens: o.max_new_tokens.unwrap_or(20),
        do_sample: o.do_sample.unwrap_or(sampling_asked) && temperature > 0.0,
        temperature,
        top_k: o.top_k,
        top_p: o.top_p,
        repetition_penalty: o.repetition_penalty,
        stop_ids,
        pad_id,
    };
    if let Some(seed) = o.seed {
        tch::manual_seed(seed);
    }
    let stop_strings = o.stop_strings.unwrap_or_default();
    let tokenizer = match (&tokenizer, stop_strings.is_empty()) {
        (Value::UserData(ud), _) => Some(ud.borrow::<LuaTokenizer>().map_err(|_| misuse(call, "tokenizer must be a tokenizer"))?),
        (Value::Nil, true) => None,
        (Value::Nil, false) => return Err(misuse(call, "stop_strings needs a tokenizer (opts.tokenizer)")),
        (other, _) => return Err(misuse(call, format!("tokenizer must be a tokenizer, got {}", describe(other)))),
    };
    let mut stop_on_strings = |_: usize, generated: &[i64]| -> anyhow::Result<bool> {
        match &tokenizer {
            Some(tok) => {
                let text = tok.decode_ids(generated, true)?;
                Ok(stop_strings.iter().any(|s| text.contains(s.as_str())))
            }
            None => Ok(false),
        }
    };
    let stop_row: Option<&mut dyn FnMut(usize, &[i64]) -> anyhow::Result<bool>> = if stop_strings.is_empty() { None } else { Some(&mut stop_on_strings) };
    let mut on_token_cb = |step: i64, tokens: &Tensor| -> anyhow::Result<bool> {
        match &on_token {
            None => Ok(true),
            Some(f) => {
                let ids = Vec::<i64>::try_from(&tokens.f_to_device(Device::Cpu)?)?;
                let r: Value = f.call((step + 1, lua.create_sequence_from(ids)?)).map_err(|e| anyhow::anyhow!("on_token: {e}"))?;
                Ok(!matches!(r, Value::Boolean(false)))
            }
        }
    };
    let out = generate(model, &ids, mask.as_ref(), &g, stop_row, &mut on_token_cb).or_misuse(call)?;
    Ok(Value::UserData(lua.create_userdata(wrap(lua, out)?)?))
}

/// The model's parameters by name, only those that require gradients if `trainable`.
fn selected_params(model: &Model, trainable: bool) -> Vec<(String, Tensor)> {
    model.params.iter().filter(|(_, p)| !trainable || p.requires_grad()).map(|(n, p)| (n.clone(), p.shallow_clone())).collect()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ParamOptions {
    /// Only parameters that require gradients.
    trainable: Option<bool>,
}

impl UserData for LuaModel {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("forward", |lua, this, args: Table| forward(lua, &this.0, args));
        methods.add_meta_method(mlua::MetaMethod::Call, |lua, this, args: Table| forward(lua, &this.0, args));
        methods.add_method("generate", |lua, this, (ids, opts): (Value, Option<Table>)| generate_lua(lua, &this.0, ids, opts));
        methods.add_method("new_cache", |_, this, ()| match this.0.new_cache() {
            Some(c) => Ok(LuaCache(std::cell::RefCell::new(c))),
            None => Err(misuse("model.new_cache", format!("{} is not a causal language model", this.0.architecture))),
        });
        methods.add_method("named_parameters", |lua, this, opts: Option<Table>| {
            let o: ParamOptions = options(lua, "model.named_parameters", opts)?;
            let list = selected_params(&this.0, o.trainable.unwrap_or(false));
            let mut i = 0;
            let lua2 = lua.clone();
            lua.create_function_mut(move |_, ()| {
                i += 1;
                match list.get(i - 1) {
                    Some((n, p)) => Ok((Value::String(lua2.create_string(n)?), Value::UserData(lua2.create_userdata(wrap(&lua2, p.shallow_clone())?)?))),
                    None => Ok((Value::Nil, Value::Nil)),
                }
            })
        });
        methods.add_method("parameters", |lua, this, opts: Option<Table>| {
            let o: ParamOptions = options(lua, "model.parameters", opts)?;
            let t = lua.create_table()?;
            for (_, p) in selected_params(&this.0, o.trainable.unwrap_or(false)) {
                t.raw_push(wrap(lua, p)?)?;
            }
            Ok(t)
        });
        methods.add_method("state_dict", |lua, this, ()| {
            let t = lua.create_table()?;
            for (n, p) in &this.0.params {
                t.set(n.as_str(), wrap(lua, p.shallow_clone())?)?;
            }
            Ok(t)
        });
        methods.add_method("num_parameters", |lua, this, opts: Option<Table>| {
            let o: ParamOptions = options(lua, "model.num_parameters", opts)?;
            Ok(selected_params(&this.0, o.trainable.unwrap_or(false)).iter().map(|(_, p)| p.numel() as i64).sum::<i64>())
        });
        methods.add_function("train", |_, (ud, mode): (mlua::AnyUserData, Option<bool>)| {
            ud.borrow_mut::<LuaModel>()?.0.training = mode.unwrap_or(true);
            Ok(ud)
        });
        methods.add_function("eval", |_, ud: mlua::AnyUserData| {
            ud.borrow_mut::<LuaModel>()?.0.training = false;
            Ok(ud)
        });
        methods.add_function("freeze", |_, ud: mlua::AnyUserData| {
            track_grads(&ud.borrow::<LuaModel>()?.0, false)?;
            Ok(ud)
        });
        methods.add_function("unfreeze", |_, ud: mlua::AnyUserData| {
            track_grads(&ud.borrow::<LuaModel>()?.0, true)?;
            Ok(ud)
        });
        methods.add_function("to", |lua, (ud, opts): (mlua::AnyUserData, Table)| {
            let call = "model.to";
            let o: LoadOptions = options(lua, call, Some(opts))?;
            let (kind, device) = placement(call, &o)?;
            let device = if o.device.is_some() { device } else { ud.borrow::<LuaModel>()?.0.device() };
            let _guard = tch::no_grad_guard();
            for (_, p) in &ud.borrow::<LuaModel>()?.0.params {
                let k = match kind {
                    Some(k) if is_floating(p.kind()) => k,
                    _ => p.kind(),
                };
                let moved = p.f_to_dtype_layout((k, device), false, false).or_misuse(call)?;
                let mut target = p.shallow_clone();
                target.f_set_data(&moved).or_misuse(call)?;
            }
            Ok(ud)
        });
        methods.add_method("save", |lua, this, dir: String| match this.0.save(Path::new(&dir)) {
            Ok(()) => Ok(MultiValue::from_iter([Value::Boolean(true)])),
            Err(e) => failure(lua, format!("model.save: {e:#}")),
        });
        methods.add_method("config", |lua, this, ()| lua.to_value(&serde_json::Value::Object(this.0.config.json.clone())));
        methods.add_method("architecture", |_, this, ()| Ok(this.0.architecture.clone()));
        methods.add_method("dtype", |_, this, ()| Ok(crate::tensor::dtype_name(this.0.dtype())));
        methods.add_method("device", |_, this, ()| Ok(crate::tensor::device_name(this.0.device())));
        methods.add_meta_method(mlua::MetaMethod::ToString, |_, this, ()| {
            let n: i64 = this.0.params.iter().map(|(_, p)| p.numel() as i64).sum();
            Ok(format!("{}({} parameters, {}, {})", this.0.architecture, n, crate::tensor::dtype_name(this.0.dtype()), crate::tensor::device_name(this.0.device())))
        });
    }
}

pub fn create_table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("load", lua.create_function(load)?)?;
    t.set("new", lua.create_function(new)?)?;
    t.set("mean_pool", lua.create_function(|lua, (hidden, mask): (Value, Value)| {
        let call = "models.mean_pool";
        let hidden = tensor_arg(call, &hidden)?;
        let mask = optional_tensor_arg(call, &mask)?;
        wrap(lua, mean_pool(&hidden, mask.as_ref()).or_misuse(call)?)
    })?)?;
    Ok(t)
}
