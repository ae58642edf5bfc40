//! `mt.models`: Hugging Face models as module handles. `load(dir, opts)` and `new(arch, config,
//! opts)` give the model's root; `get_submodule`, `named_modules` and field access give handles
//! of its submodules, which share the model. Every handle answers the module interface of
//! stdlib/moontune/nn.lua (`parameters`, `named_parameters`, `named_modules`, `get_submodule`,
//! `freeze`, `train`, `eval`, `to`, `state_dict`, `load_state_dict`, `num_parameters`, `apply`,
//! `register_forward_hook`), relative to itself; the root adds `forward{...}`, `generate`,
//! `new_cache`, `save` and `config`. A model that cannot be loaded is `nil, message`; misuse raises.

use std::cell::{Ref, RefCell, RefMut};
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::{Rc, Weak};

use mlua::{Function, Lua, LuaSerdeExt, MultiValue, Table, UserData, UserDataFields, UserDataMethods, Value};
use serde::Deserialize;
use tch::{Device, Kind, Tensor};

use super::args::{describe, to_json, failure, misuse, options, options_accepting, split_values, text, OrMisuse};
use super::tensor::{as_tensor, optional_tensor_arg, tensor_arg, wrap, wrap_named};
use super::optim::ZeroGradOptions;
use super::tokenizer::LuaTokenizer;
use crate::gguf::export::FileType;
use crate::models::bert::mean_pool;
use crate::models::cache::KvCache;
use crate::models::generate::{generate, GenerateRequest};
use crate::models::{ForwardInput, Model};
use crate::nn::hooks::HookFn;
use crate::nn::module::{self, Member, Module, NamedParam};
use crate::nn::names::NameMatcher;
use crate::optim::zero_grads;
use crate::tensor::{parse_device, parse_dtype, parse_placement, Placement as TensorPlacement};
use super::callbacks::{function, method, method_mut, method_ud};

/// A loaded model, or one of its submodules: the model is shared; `path` names the module
/// ("" for the root).
pub struct LuaModule {
    pub(super) model: Rc<RefCell<Model>>,
    pub(super) path: String,
}

/// A key/value cache for incremental decoding with `forward{ ..., cache = c }`.
pub struct LuaCache(pub RefCell<KvCache>);

impl UserData for LuaCache {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_meta_field(mlua::MetaMethod::Type, "cache");
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        method(methods, "len", "cache.len", |_, this, ()| Ok(this.0.borrow().len()));
    }
}

/// What `register_forward_hook` returns: `remove()` takes the hooks off again.
pub struct LuaHookHandle {
    model: Weak<RefCell<Model>>,
    ids: Vec<u64>,
}

impl UserData for LuaHookHandle {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        method_mut(methods, "remove", "hook.remove", |_, this, ()| {
            if let Some(model) = this.model.upgrade() {
                let mut m = model.try_borrow_mut().map_err(|_| misuse("hook.remove", "the model is running (remove hooks outside its forward)"))?;
                for id in this.ids.drain(..) {
                    m.hooks.remove(id);
                }
            }
            Ok(())
        });
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Placement {
    /// Convert floating-point weights to this dtype (default: as stored).
    dtype: Option<String>,
    /// Where to put the model (default "cpu"; for `to`, where it is).
    device: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LoadOptions {
    /// Convert floating-point weights to this dtype (default: as stored; float32 for GGUF).
    dtype: Option<String>,
    /// Where to put the model (default "cpu").
    device: Option<String>,
    /// A GGUF's quantised linear weights stay in their blocks (frozen, de-quantised at each
    /// forward) instead of being expanded.
    quantized: Option<bool>,
}

fn placement(call: &str, o: &Placement) -> mlua::Result<(Option<Kind>, Option<Device>)> {
    let kind = o.dtype.as_deref().map(parse_dtype).transpose().or_misuse(call)?;
    module::check_weight_dtype(kind).or_misuse(call)?;
    let device = o.device.as_deref().map(parse_device).transpose().or_misuse(call)?;
    Ok((kind, device))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ParamOptions {
    /// Only parameters that require gradients.
    trainable: Option<bool>,
    /// Only parameters of this owner: "base", "adapters" (any adapter), or an adapter's name.
    owner: Option<String>,
    /// Only parameters whose data was changed in place since they were made (an optimizer step,
    /// a merge, a copy into them): what a checkpoint must keep of a frozen model.
    changed: Option<bool>,
}

impl ParamOptions {
    fn admits(&self, p: &NamedParam) -> bool {
        let owned = match (self.owner.as_deref(), &p.owner) {
            (None, _) => true,
            (Some("base"), module::Owner::Base) => true,
            (Some("adapters"), module::Owner::Adapter(_)) => true,
            (Some(name), module::Owner::Adapter(a)) => name == a,
            (Some(_), module::Owner::Base) => false,
        };
        let changed = !self.changed.unwrap_or(false) || crate::tensor::shim::version(&p.tensor).is_ok_and(|v| v > 0);
        owned && changed && (!self.trainable.unwrap_or(false) || p.tensor.requires_grad())
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LoadStateOptions {
    /// Missing and unexpected names are errors (default true).
    strict: Option<bool>,
}

fn root_handle(model: Model) -> LuaModule {
    LuaModule { model: Rc::new(RefCell::new(model)), path: String::new() }
}

fn load(lua: &Lua, (dir, opts): (String, Option<Table>)) -> mlua::Result<MultiValue> {
    let call = "models.load";
    let o: LoadOptions = options(lua, call, opts)?;
    let (kind, device) = placement(call, &Placement { dtype: o.dtype, device: o.device })?;
    match Model::load_with(Path::new(&dir), kind, device.unwrap_or(Device::Cpu), o.quantized.unwrap_or(false)) {
        Ok(model) => Ok(MultiValue::from_iter([Value::UserData(lua.create_userdata(root_handle(model))?)])),
        Err(e) => failure(lua, format!("{call}: {e:#}")),
    }
}

fn new(lua: &Lua, (arch, config, opts): (String, Table, Option<Table>)) -> mlua::Result<LuaModule> {
    let call = "models.new";
    let o: Placement = options(lua, call, opts)?;
    let (kind, device) = placement(call, &o)?;
    let config = Value::Table(config);
    let json = to_json(call, "config", &config)?;
    let serde_json::Value::Object(map) = json else { return Err(misuse(call, "config must be a table of keys")) };
    Ok(root_handle(Model::new(&arch, map, kind.unwrap_or(Kind::Float), device.unwrap_or(Device::Cpu)).or_misuse(call)?))
}

/// A name matcher from Lua: nil (every name), a string (a Lua pattern over the whole name) or
/// a sequence of names (suffixes at a dot boundary).
pub fn matcher_arg(call: &str, v: &Value) -> mlua::Result<NameMatcher> {
    match v {
        Value::Nil => Ok(NameMatcher::All),
        Value::String(s) => NameMatcher::pattern(&text(call, "the pattern", s)?).or_misuse(call),
        Value::Table(t) => {
            let names = t.sequence_values::<String>().collect::<mlua::Result<Vec<_>>>().map_err(|_| misuse(call, "a list of names must hold strings"))?;
            NameMatcher::suffixes(names).or_misuse(call)
        }
        other => Err(misuse(call, format!("expected a name pattern (string), a list of names or nil, got {}", describe(other)))),
    }
}

fn join(prefix: &str, name: &str) -> String {
    match (prefix.is_empty(), name.is_empty()) {
        (true, _) => name.to_string(),
        (_, true) => prefix.to_string(),
        _ => format!("{prefix}.{name}"),
    }
}

impl LuaModule {
    pub(super) fn model(&self, call: &str) -> mlua::Result<Ref<'_, Model>> {
        self.model.try_borrow().map_err(|_| misuse(call, "the model is being changed"))
    }

    pub(super) fn model_mut(&self, call: &str) -> mlua::Result<RefMut<'_, Model>> {
        self.model.try_borrow_mut().map_err(|_| misuse(call, "the model is running (call this outside its forward and hooks)"))
    }

    fn handle(&self, path: String) -> LuaModule {
        LuaModule { model: self.model.clone(), path }
    }

    pub(super) fn is_root(&self, call: &str) -> mlua::Result<()> {
        if self.path.is_empty() {
            Ok(())
        } else {
            Err(misuse(call, format!("'{}' is a submodule; call this on the model itself", self.path)))
        }
    }

    /// Runs `f` on this handle's module.
    fn with_module<R>(&self, call: &str, f: impl FnOnce(&dyn Module) -> anyhow::Result<R>) -> mlua::Result<R> {
        let model = self.model(call)?;
        let m = module::get_submodule(model.root(), &self.path).or_misuse(call)?;
        f(m).or_misuse(call)
    }

    /// This module's parameters, named relative to it (only trainable ones if asked).
    fn parameters(&self, call: &str, trainable: bool) -> mlua::Result<Vec<NamedParam>> {
        let mut list = self.with_module(call, |m| Ok(module::named_parameters(m)))?;
        list.retain(|p| !trainable || p.tensor.requires_grad());
        Ok(list)
    }

    /// A parameter as Lua sees it: a handle carrying its name in the model.
    pub(super) fn wrap_param(&self, lua: &Lua, p: NamedParam) -> mlua::Result<super::tensor::LuaTensor> {
        wrap_named(lua, p.tensor, &join(&self.path, &p.name))
    }

    fn named_parameters(&self, lua: &Lua, opts: Option<Table>) -> mlua::Result<Table> {
        let call = "module.named_parameters";
        let o: ParamOptions = options(lua, call, opts)?;
        let out = lua.create_table()?;
        for p in self.parameters(call, false)?.into_iter().filter(|p| o.admits(p)) {
            let name = p.name.clone();
            out.set(name, self.wrap_param(lua, p)?)?;
        }
        Ok(out)
    }

    fn parameter_list(&self, lua: &Lua, opts: Option<Table>) -> mlua::Result<Table> {
        let call = "module.parameters";
        let o: ParamOptions = options(lua, call, opts)?;
        let out = lua.create_table()?;
        for p in self.parameters(call, false)?.into_iter().filter(|p| o.admits(p)) {
            out.raw_push(self.wrap_param(lua, p)?)?;
        }
        Ok(out)
    }

    /// (relative name, full path) of this module and every module under it, in tree order.
    fn module_names(&self, call: &str) -> mlua::Result<Vec<(String, String)>> {
        self.with_module(call, |m| Ok(module::named_modules(m).into_iter().map(|(n, _)| (n.clone(), join(&self.path, &n))).collect()))
    }

    fn named_modules(&self, lua: &Lua) -> mlua::Result<Table> {
        let out = lua.create_table()?;
        for (name, path) in self.module_names("module.named_modules")? {
            out.set(name, self.handle(path))?;
        }
        Ok(out)
    }

    fn get_submodule(&self, name: &str) -> mlua::Result<LuaModule> {
        let call = "module.get_submodule";
        let path = join(&self.path, name);
        let model = self.model(call)?;
        module::get_submodule(model.root(), &path).or_misuse(call)?;
        Ok(self.handle(path))
    }

    /// `m.weight`, `m.lm_head`, `m.layers[0]`: a parameter of this module, a child, or
    /// `training`.
    fn index(&self, lua: &Lua, key: Value) -> mlua::Result<Value> {
        let call = "module.__index";
        let key = match &key {
            Value::String(s) => text(call, "a field name", s)?,
            Value::Integer(i) => i.to_string(),
            other => return Err(misuse(call, format!("no field {}", describe(other)))),
        };
        if key == "training" {
            return Ok(Value::Boolean(self.model(call)?.training));
        }
        let path = join(&self.path, &key);
        match self.with_module(call, |m| Ok(module::member(m, &key)))? {
            Some(Member::Parameter(t)) => Ok(Value::UserData(lua.create_userdata(wrap_named(lua, t, &path)?)?)),
            Some(Member::Child) => Ok(Value::UserData(lua.create_userdata(self.handle(path))?)),
            None => Ok(Value::Nil),
        }
    }

    fn set_trainable(&self, pattern: Value, trainable: bool) -> mlua::Result<()> {
        let call = if trainable { "module.unfreeze" } else { "module.freeze" };
        let matcher = matcher_arg(call, &pattern)?;
        self.with_module(call, |m| module::set_trainable(m, &matcher, trainable).map(drop))
    }

    fn state_dict(&self, lua: &Lua) -> mlua::Result<Table> {
        let out = lua.create_table()?;
        for (name, t) in self.with_module("module.state_dict", |m| Ok(module::state_dict(m)))? {
            let full = join(&self.path, &name);
            out.set(name, wrap_named(lua, t, &full)?)?;
        }
        Ok(out)
    }

    fn load_state_dict(&self, lua: &Lua, sd: Table, opts: Option<Table>) -> mlua::Result<(Table, Table)> {
        let call = "module.load_state_dict";
        let o: LoadStateOptions = options(lua, call, opts)?;
        let mut tensors = BTreeMap::new();
        for pair in sd.pairs::<String, Value>() {
            let (name, v) = pair.map_err(|_| misuse(call, "a state dict maps names (strings) to tensors"))?;
            tensors.insert(name.clone(), tensor_arg(&format!("{call}: '{name}'"), &v)?);
        }
        let mismatch = self.with_module(call, |m| module::load_state_dict(m, &tensors, o.strict.unwrap_or(true)))?;
        Ok((lua.create_sequence_from(mismatch.missing)?, lua.create_sequence_from(mismatch.unexpected)?))
    }

    fn apply(&self, lua: &Lua, f: Function) -> mlua::Result<()> {
        for (_, path) in self.module_names("module.apply")? {
            f.call::<()>(lua.create_userdata(self.handle(path))?)?;
        }
        Ok(())
    }

    fn register_forward_hook(&self, lua: &Lua, pattern: Value, f: Function) -> mlua::Result<LuaHookHandle> {
        let call = "module.register_forward_hook";
        let matcher = matcher_arg(call, &pattern)?;
        let picked = self.with_module(call, |m| module::matching_modules(m, &matcher))?;
        let mut model = self.model_mut(call)?;
        let mut ids = Vec::new();
        for name in picked {
            let path = join(&self.path, &name);
            ids.push(model.hooks.add(&path, lua_hook(lua, &self.model, &path, name, f.clone())));
        }
        Ok(LuaHookHandle { model: Rc::downgrade(&self.model), ids })
    }

    fn forward_tensor(&self, lua: &Lua, x: Value) -> mlua::Result<super::tensor::LuaTensor> {
        let call = "module.forward";
        let x = tensor_arg(call, &x)?;
        let out = self.model(call)?.forward_submodule(&self.path, &x).or_misuse(call)?;
        wrap(lua, out)
    }
}

/// A hook that calls `f(module, input, output, name)` and takes a returned tensor as the new
/// output. It holds the model weakly (the model holds the hook).
fn lua_hook(lua: &Lua, model: &Rc<RefCell<Model>>, path: &str, name: String, f: Function) -> HookFn {
    let weak_lua = lua.weak();
    let model = Rc::downgrade(model);
    let path = path.to_string();
    Box::new(move |call| {
        let lua = weak_lua.try_upgrade().ok_or_else(|| anyhow::anyhow!("the Lua state is gone"))?;
        let model = model.upgrade().ok_or_else(|| anyhow::anyhow!("the model is gone"))?;
        let handle = LuaModule { model, path: path.clone() };
        let input = wrap(&lua, call.input.shallow_clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let output = wrap(&lua, call.output.shallow_clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let returned: Value = f.call((handle, input, output, name.as_str())).map_err(|e| anyhow::anyhow!("forward hook on '{}': {e}", call.module))?;
        match returned {
            Value::Nil => Ok(None),
            other => as_tensor(&other).map(Some).ok_or_else(|| anyhow::anyhow!("forward hook on '{}' returned {}, expected a tensor or nothing", call.module, describe(&other))),
        }
    })
}

fn optional_tensor(call: &str, table: &Table, key: &str) -> mlua::Result<Option<Tensor>> {
    optional_tensor_arg(&format!("{call}: {key}"), &table.get::<Value>(key)?)
}

fn forward(lua: &Lua, this: &LuaModule, args: Value) -> mlua::Result<Value> {
    let call = "model.forward";
    super::memory::collect_before_forward(lua)?;
    let args = match args {
        Value::Table(t) if this.path.is_empty() => t,
        Value::Table(_) => return Err(misuse(call, format!("'{}' takes a tensor; the table of inputs is for the whole model", this.path))),
        x if !this.path.is_empty() => return Ok(Value::UserData(lua.create_userdata(this.forward_tensor(lua, x)?)?)),
        other => return Err(misuse(call, format!("expected a table of inputs ({{ input_ids = ... }}), got {}", describe(&other)))),
    };
    const KEYS: [&str; 8] = ["input_ids", "inputs_embeds", "attention_mask", "position_ids", "token_type_ids", "labels", "cache", "output_hidden_states"];
    for pair in args.pairs::<Value, Value>() {
        let (k, _) = pair?;
        let name = match &k {
            Value::String(s) => s.to_string_lossy(),
            other => describe(other),
        };
        if !KEYS.contains(&name.as_str()) {
            return Err(misuse(call, format!("unknown key '{name}' (accepted: {})", KEYS.join(", "))));
        }
    }
    let output_hidden_states = match args.get::<Value>("output_hidden_states")? {
        Value::Nil => false,
        Value::Boolean(b) => b,
        other => return Err(misuse(call, format!("output_hidden_states must be a boolean, got {}", describe(&other)))),
    };
    let input = ForwardInput {
        input_ids: optional_tensor(call, &args, "input_ids")?,
        inputs_embeds: optional_tensor(call, &args, "inputs_embeds")?,
        attention_mask: optional_tensor(call, &args, "attention_mask")?,
        position_ids: optional_tensor(call, &args, "position_ids")?,
        token_type_ids: optional_tensor(call, &args, "token_type_ids")?,
        labels: optional_tensor(call, &args, "labels")?,
        output_hidden_states,
    };
    let model = this.model(call)?;
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
    drop(model);
    let t = lua.create_table()?;
    for (name, value) in [("logits", out.logits), ("loss", out.loss), ("last_hidden_state", out.last_hidden_state), ("pooler_output", out.pooler_output)] {
        if let Some(v) = value {
            t.set(name, wrap(lua, v)?)?;
        }
    }
    if let Some(hidden) = out.head_input {
        // The loss was fused with the head: `logits` is made from the hidden states when read.
        let model = Rc::downgrade(&this.model);
        let meta = lua.create_table()?;
        meta.set("__index", lua.create_function(move |lua, (t, key): (Table, Value)| {
            if !matches!(&key, Value::String(k) if k.as_bytes() == b"logits".as_slice()) {
                return Ok(Value::Nil);
            }
            let model = model.upgrade().ok_or_else(|| misuse(call, "the model was freed; its logits cannot be made"))?;
            let logits = model.try_borrow().map_err(|_| misuse(call, "the model is being changed"))?.lm_head(&hidden).or_misuse(call)?;
            let logits = Value::UserData(lua.create_userdata(wrap(lua, logits)?)?);
            t.raw_set("logits", logits.clone())?;
            Ok(logits)
        })?)?;
        t.set_metatable(Some(meta))?;
    }
    Ok(Value::Table(t))
}

/// Keys of `generate`'s options that are Lua values rather than settings.
const GENERATE_VALUES: [&str; 3] = ["tokenizer", "attention_mask", "on_token"];

/// `model:generate(ids, { max_new_tokens =, ..., tokenizer =, attention_mask =, on_token = })`.
fn generate_lua(lua: &Lua, this: &LuaModule, ids: Value, opts: Option<Table>) -> mlua::Result<Value> {
    let call = "model.generate";
    this.is_root(call)?;
    let ids = tensor_arg(call, &ids)?;
    // The settings are read from a copy: the caller's table is left as it was.
    let (settings, values) = split_values(lua, opts, &GENERATE_VALUES)?;
    let [tokenizer, mask, on_token]: [Value; 3] = values.try_into().map_err(|_| misuse(call, "internal: option values"))?;
    let mask = optional_tensor_arg(&format!("{call}: attention_mask"), &mask)?;
    let on_token = match on_token {
        Value::Function(f) => Some(f),
        Value::Nil => None,
        other => return Err(misuse(call, format!("on_token must be a function, got {}", describe(&other)))),
    };
    let request: GenerateRequest = options_accepting(lua, call, settings, &GENERATE_VALUES)?;
    let model = this.model(call)?;
    let o = request.resolve(&model.config, model.generation.as_ref()).or_misuse(call)?;
    let tokenizer = match &tokenizer {
        Value::Nil => None,
        Value::UserData(ud) => Some(ud.borrow::<LuaTokenizer>().map_err(|_| misuse(call, "tokenizer must be a tokenizer"))?),
        other => return Err(misuse(call, format!("tokenizer must be a tokenizer, got {}", describe(other)))),
    };
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
    let out = generate(&model, &ids, mask.as_ref(), &o, tokenizer.as_deref().map(|t| &*t.0), &mut on_token_cb).or_misuse(call)?;
    Ok(Value::UserData(lua.create_userdata(wrap(lua, out)?)?))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SaveGgufOptions {
    /// f32, f16 (default), bf16, q8_0, q4_0 or q4_k_m.
    r#type: Option<String>,
    /// `general.name`.
    name: Option<String>,
}

/// `model:save_gguf(path, { type =, tokenizer =, name = })`.
fn save_gguf(lua: &Lua, this: &LuaModule, path: String, opts: Option<Table>) -> mlua::Result<MultiValue> {
    let call = "model.save_gguf";
    this.is_root(call)?;
    let (settings, values) = split_values(lua, opts, &["tokenizer"])?;
    let o: SaveGgufOptions = options_accepting(lua, call, settings, &["tokenizer"])?;
    let ft = FileType::parse(o.r#type.as_deref().unwrap_or("f16")).or_misuse(call)?;
    let tokenizer = match &values[0] {
        Value::Nil => None,
        Value::UserData(ud) => Some(ud.borrow::<LuaTokenizer>().map_err(|_| misuse(call, "tokenizer must be a tokenizer"))?),
        other => return Err(misuse(call, format!("tokenizer must be a tokenizer, got {}", describe(other)))),
    };
    let model = this.model(call)?;
    match crate::gguf::export::save_gguf(&model, Path::new(&path), ft, tokenizer.as_deref().map(|t| &*t.0), o.name.as_deref()) {
        Ok(()) => Ok(MultiValue::from_iter([Value::Boolean(true)])),
        Err(e) => failure(lua, format!("{call}: {e:#}")),
    }
}

/// `model:new_cache()` or `model:new_cache{ {k0, v0}, {k1, v1}, ... }` (a prefix per layer).
fn new_cache(this: &LuaModule, prefix: Option<Table>) -> mlua::Result<LuaCache> {
    let call = "model.new_cache";
    this.is_root(call)?;
    let model = this.model(call)?;
    let Some(empty) = model.new_cache() else {
        return Err(misuse(call, format!("{} is not a causal language model", model.architecture)));
    };
    let Some(prefix) = prefix else { return Ok(LuaCache(RefCell::new(empty))) };
    let mut layers = Vec::new();
    for pair in prefix.sequence_values::<Table>() {
        let pair = pair.map_err(|_| misuse(call, "the prefix is a list of {keys, values} per layer"))?;
        layers.push((tensor_arg(call, &pair.get::<Value>(1)?)?, tensor_arg(call, &pair.get::<Value>(2)?)?));
    }
    empty.check_layers(layers.len()).map_err(|_| misuse(call, format!("the prefix has {} layers; give one {{keys, values}} pair per layer of the model", layers.len())))?;
    Ok(LuaCache(RefCell::new(KvCache::with_prefix(layers).or_misuse(call)?)))
}

impl UserData for LuaModule {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_meta_field(mlua::MetaMethod::Type, "module");
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        method(methods, "forward", "model.forward", |lua, this, args: Value| forward(lua, this, args));
        methods.add_meta_method(mlua::MetaMethod::Call, |lua, this, args: Value| forward(lua, this, args));
        methods.add_meta_method(mlua::MetaMethod::Index, |lua, this, key: Value| this.index(lua, key));
        method(methods, "generate", "model.generate", |lua, this, (ids, opts): (Value, Option<Table>)| generate_lua(lua, this, ids, opts));
        method(methods, "new_cache", "model.new_cache", |_, this, prefix: Option<Table>| new_cache(this, prefix));
        method(methods, "named_parameters", "module.named_parameters", |lua, this, opts: Option<Table>| this.named_parameters(lua, opts));
        method(methods, "parameters", "module.parameters", |lua, this, opts: Option<Table>| this.parameter_list(lua, opts));
        method(methods, "named_modules", "module.named_modules", |lua, this, ()| this.named_modules(lua));
        method(methods, "get_submodule", "module.get_submodule", |_, this, name: String| this.get_submodule(&name));
        method(methods, "state_dict", "module.state_dict", |lua, this, ()| this.state_dict(lua));
        method(methods, "load_state_dict", "module.load_state_dict", |lua, this, (sd, opts): (Table, Option<Table>)| this.load_state_dict(lua, sd, opts));
        method(methods, "num_parameters", "module.num_parameters", |lua, this, opts: Option<Table>| {
            let o: ParamOptions = options(lua, "module.num_parameters", opts)?;
            Ok(this.parameters("module.num_parameters", false)?.iter().filter(|p| o.admits(p)).map(|p| p.elements).sum::<i64>())
        });
        method_ud(methods, "train", "module.train", |_, ud, mode: Option<bool>| {
            ud.borrow::<LuaModule>()?.model_mut("module.train")?.training = mode.unwrap_or(true);
            Ok(ud)
        });
        method_ud(methods, "eval", "module.eval", |_, ud, (): ()| {
            ud.borrow::<LuaModule>()?.model_mut("module.eval")?.training = false;
            Ok(ud)
        });
        method_ud(methods, "freeze", "module.freeze", |_, ud, pattern: Value| {
            ud.borrow::<LuaModule>()?.set_trainable(pattern, false)?;
            Ok(ud)
        });
        method_ud(methods, "unfreeze", "module.unfreeze", |_, ud, pattern: Value| {
            ud.borrow::<LuaModule>()?.set_trainable(pattern, true)?;
            Ok(ud)
        });
        method_ud(methods, "to", "module.to", |lua, ud, opts: Value| {
            let call = "module.to";
            let o: Placement = match opts {
                Value::Table(t) => options(lua, call, Some(t))?,
                Value::String(s) => {
                    let s = text(call, "the dtype or device", &s)?;
                    match parse_placement(&s).or_misuse(call)? {
                        TensorPlacement::Dtype(_) => Placement { dtype: Some(s), device: None },
                        TensorPlacement::Device(_) => Placement { dtype: None, device: Some(s) },
                    }
                }
                other => return Err(misuse(call, format!("expected {{ dtype =, device = }} or a dtype or device name, got {}", describe(&other)))),
            };
            let (kind, device) = placement(call, &o)?;
            ud.borrow::<LuaModule>()?.with_module(call, |m| module::to(m, kind, device))?;
            Ok(ud)
        });
        method_ud(methods, "zero_grad", "module.zero_grad", |lua, ud, opts: Option<Table>| {
            let call = "module.zero_grad";
            let o: ZeroGradOptions = options(lua, call, opts)?;
            let params: Vec<Tensor> = ud.borrow::<LuaModule>()?.parameters(call, false)?.into_iter().map(|p| p.tensor).collect();
            zero_grads(&params, o.set_to_none.unwrap_or(true)).or_misuse(call)?;
            Ok(ud)
        });
        method_ud(methods, "apply", "module.apply", |lua, ud, f: Function| {
            ud.borrow::<LuaModule>()?.apply(lua, f)?;
            Ok(ud)
        });
        method(methods, "register_forward_hook", "module.register_forward_hook", |lua, this, (pattern, f): (Value, Function)| this.register_forward_hook(lua, pattern, f));
        method(methods, "name", "module.name", |_, this, ()| Ok(this.path.clone()));
        method(methods, "save", "model.save", |lua, this, dir: String| {
            this.is_root("model.save")?;
            match this.model("model.save")?.save(Path::new(&dir)) {
                Ok(()) => Ok(MultiValue::from_iter([Value::Boolean(true)])),
                Err(e) => failure(lua, format!("model.save: {e:#}")),
            }
        });
        super::peft::add_model_methods(methods);
        super::modular::add_model_methods(methods);
        method(methods, "save_gguf", "model.save_gguf", |lua, this, (path, opts): (String, Option<Table>)| save_gguf(lua, this, path, opts));
        method(methods, "config", "model.config", |lua, this, ()| lua.to_value(&serde_json::Value::Object(this.model("model.config")?.config.json.clone())));
        method(methods, "architecture", "model.architecture", |_, this, ()| Ok(this.model("model.architecture")?.architecture.clone()));
        method_ud(methods, "gradient_checkpointing", "model.gradient_checkpointing", |_, ud, on: Option<bool>| {
            let call = "model.gradient_checkpointing";
            let this = ud.borrow::<LuaModule>()?;
            this.is_root(call)?;
            let shared = on.unwrap_or(true).then(|| Rc::downgrade(&this.model));
            this.model_mut(call)?.set_gradient_checkpointing(shared);
            drop(this);
            Ok(ud)
        });
        method(methods, "is_gradient_checkpointing", "model.is_gradient_checkpointing", |_, this, ()| Ok(this.model("model.is_gradient_checkpointing")?.is_gradient_checkpointing()));
        method(methods, "dtype", "model.dtype", |_, this, ()| Ok(crate::tensor::dtype_name(this.model("model.dtype")?.dtype())));
        method(methods, "device", "model.device", |_, this, ()| Ok(crate::tensor::device_name(this.model("model.device")?.device())));
        methods.add_meta_method(mlua::MetaMethod::ToString, |_, this, ()| this.with_module("module.__tostring", |m| Ok(module::format_tree(m))));
    }
}

/// The parameters of `state.model`-like values for the run loop and front ends: a loaded model
/// or submodule, or a Lua module (through its `named_parameters`). None for anything else.
pub fn parameters_of(v: &Value) -> Option<Vec<NamedParam>> {
    match v {
        Value::UserData(ud) => {
            let handle = ud.borrow::<LuaModule>().ok()?;
            handle.parameters("parameters", false).ok()
        }
        Value::Table(t) => {
            let f: Function = t.get("named_parameters").ok()?;
            let named: Table = f.call(t.clone()).ok()?;
            let mut out = Vec::new();
            for (name, value) in named.pairs::<String, Value>().flatten() {
                let tensor = as_tensor(&value)?;
                out.push(NamedParam { elements: tensor.numel() as i64, tensor, name, owner: module::Owner::Base });
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Some(out)
        }
        _ => None,
    }
}

/// The adapters of a loaded model (`state.model`) with their norms, for the run loop's front
/// ends; None for anything else.
pub fn adapters_of(v: &Value) -> Option<Vec<crate::peft::AdapterSummary>> {
    let Value::UserData(ud) = v else { return None };
    let handle = ud.borrow::<LuaModule>().ok()?;
    let model = handle.model.try_borrow().ok()?;
    crate::peft::summary(&model).ok()
}

/// The heat maps a loaded model (`state.model`) shows by itself: each fusion's weights over the
/// last forward ("fusion <adapters>") and the gated adapters' gates ("gates"); empty for
/// anything else.
pub fn model_panels_of(v: &Value) -> Vec<crate::run::event::Panel> {
    let Value::UserData(ud) = v else { return Vec::new() };
    let Ok(handle) = ud.borrow::<LuaModule>() else { return Vec::new() };
    let Ok(model) = handle.model.try_borrow() else { return Vec::new() };
    crate::peft::modular::model_panels(&model)
        .into_iter()
        .filter_map(|(name, rows, cols, weights)| {
            let (values, rows, cols) = crate::run::panel::from_tensor(&weights, Some(rows), Some(cols)).ok()?;
            Some(crate::run::event::Panel { name, rows, cols, values })
        })
        .collect()
}

pub fn create_table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("load", function(lua, "models.load", load)?)?;
    t.set("new", function(lua, "models.new", new)?)?;
    t.set("mean_pool", function(lua, "models.mean_pool", |lua, (hidden, mask): (Value, Value)| {
        let call = "models.mean_pool";
        let hidden = tensor_arg(call, &hidden)?;
        let mask = optional_tensor_arg(call, &mask)?;
        wrap(lua, mean_pool(&hidden, mask.as_ref()).or_misuse(call)?)
    })?)?;
    Ok(t)
}
