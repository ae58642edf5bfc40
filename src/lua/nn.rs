//! The native part of `mt.nn`: `functional` (losses, linear, embedding, norms, dropout,
//! attention, activations), `init`, and what the Lua module classes (stdlib/moontune/nn.lua)
//! share with loaded models: the name matcher, named parameter handles, and telling a loaded
//! model's module from other values.

use mlua::{AnyUserData, Lua, ObjectLike, Table, Value};
use serde::Deserialize;

use super::args::{describe, int_list, misuse, options, options_accepting, split_values, OrMisuse};
use super::models::{matcher_arg, LuaModule};
use super::tensor::{in_place, optional_tensor_arg, tensor_arg, wrap_named, wrap_result, LuaTensor};
use crate::nn::functional::{self as F, AttentionOptions, KlReduction, Reduction};
use crate::nn::init;
use crate::tensor::{parse_placement, Placement};
use super::callbacks::{function};

fn shape_arg(call: &str, v: Value) -> mlua::Result<Vec<i64>> {
    Ok(int_list(call, mlua::MultiValue::from_iter([v]))?.0)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CrossEntropyOptions {
    /// Target id that does not count (default -100, as PyTorch).
    ignore_index: Option<i64>,
    /// Mass moved uniformly onto all classes (0 = none).
    label_smoothing: Option<f64>,
    /// "mean" (default), "sum" or "none".
    reduction: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReductionOptions {
    reduction: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NormalizeOptions {
    /// The norm's p (default 2).
    p: Option<f64>,
    /// The dim normalised (default 1).
    dim: Option<i64>,
    /// Smallest norm divided by (default 1e-12).
    eps: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CosineOptions {
    /// The dim compared along (default 1).
    dim: Option<i64>,
    /// Smallest norm (default 1e-8).
    eps: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BceOptions {
    /// "mean" (default), "sum" or "none".
    reduction: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NllOptions {
    /// Target id that does not count (default -100).
    ignore_index: Option<i64>,
    /// "mean" (default), "sum" or "none".
    reduction: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct KlOptions {
    /// "mean" (default, as PyTorch), "batchmean", "sum" or "none".
    reduction: Option<String>,
    /// The target is given as log-probabilities.
    log_target: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PadOptions {
    /// "constant" (default), "reflect", "replicate" or "circular".
    mode: Option<String>,
    /// The fill value of constant padding (default 0).
    value: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AttentionLuaOptions {
    dropout_p: Option<f64>,
    is_causal: Option<bool>,
    scale: Option<f64>,
    enable_gqa: Option<bool>,
}

fn functional(lua: &Lua) -> mlua::Result<Table> {
    let f = lua.create_table()?;
    f.set("cross_entropy", function(lua, "nn.functional.cross_entropy", |lua, (input, target, opts): (Value, Value, Option<Table>)| {
        let call = "nn.functional.cross_entropy";
        let o: CrossEntropyOptions = options(lua, call, opts)?;
        let reduction = Reduction::parse(o.reduction.as_deref().unwrap_or("mean")).or_misuse(call)?;
        let out = F::cross_entropy(&tensor_arg(call, &input)?, &tensor_arg(call, &target)?, o.ignore_index.unwrap_or(-100), o.label_smoothing.unwrap_or(0.0), reduction);
        wrap_result(lua, call, out)
    })?)?;
    f.set("mse_loss", function(lua, "nn.functional.mse_loss", |lua, (input, target, opts): (Value, Value, Option<Table>)| {
        let call = "nn.functional.mse_loss";
        let o: ReductionOptions = options(lua, call, opts)?;
        let reduction = Reduction::parse(o.reduction.as_deref().unwrap_or("mean")).or_misuse(call)?;
        wrap_result(lua, call, F::mse_loss(&tensor_arg(call, &input)?, &tensor_arg(call, &target)?, reduction))
    })?)?;
    f.set("linear", function(lua, "nn.functional.linear", |lua, (x, w, b): (Value, Value, Value)| {
        let call = "nn.functional.linear";
        let b = optional_tensor_arg(call, &b)?;
        wrap_result(lua, call, F::linear(&tensor_arg(call, &x)?, &tensor_arg(call, &w)?, b.as_ref()))
    })?)?;
    f.set("embedding", function(lua, "nn.functional.embedding", |lua, (ids, w, padding_idx): (Value, Value, Option<i64>)| {
        let call = "nn.functional.embedding";
        wrap_result(lua, call, F::embedding(&tensor_arg(call, &ids)?, &tensor_arg(call, &w)?, padding_idx))
    })?)?;
    f.set("layer_norm", function(lua, "nn.functional.layer_norm", |lua, (x, shape, w, b, eps): (Value, Value, Value, Value, Option<f64>)| {
        let call = "nn.functional.layer_norm";
        let (w, b) = (optional_tensor_arg(call, &w)?, optional_tensor_arg(call, &b)?);
        let out = F::layer_norm(&tensor_arg(call, &x)?, &shape_arg(call, shape)?, w.as_ref(), b.as_ref(), eps.unwrap_or(1e-5));
        wrap_result(lua, call, out)
    })?)?;
    f.set("rms_norm", function(lua, "nn.functional.rms_norm", |lua, (x, shape, w, eps): (Value, Value, Value, Option<f64>)| {
        let call = "nn.functional.rms_norm";
        let w = optional_tensor_arg(call, &w)?;
        wrap_result(lua, call, F::rms_norm(&tensor_arg(call, &x)?, &shape_arg(call, shape)?, w.as_ref(), eps))
    })?)?;
    f.set("dropout", function(lua, "nn.functional.dropout", |lua, (x, p, train): (Value, Option<f64>, Option<bool>)| {
        let call = "nn.functional.dropout";
        wrap_result(lua, call, F::dropout(&tensor_arg(call, &x)?, p.unwrap_or(0.5), train.unwrap_or(true)))
    })?)?;
    f.set("scaled_dot_product_attention", function(lua, "nn.functional.scaled_dot_product_attention", |lua, (q, k, v, mask, opts): (Value, Value, Value, Value, Option<Table>)| {
        let call = "nn.functional.scaled_dot_product_attention";
        let o: AttentionLuaOptions = options(lua, call, opts)?;
        let mask = optional_tensor_arg(call, &mask)?;
        let attention = AttentionOptions {
            mask: mask.as_ref(),
            dropout_p: o.dropout_p.unwrap_or(0.0),
            is_causal: o.is_causal.unwrap_or(false),
            scale: o.scale,
            enable_gqa: o.enable_gqa.unwrap_or(false),
        };
        wrap_result(lua, call, F::scaled_dot_product_attention(&tensor_arg(call, &q)?, &tensor_arg(call, &k)?, &tensor_arg(call, &v)?, &attention))
    })?)?;
    f.set("normalize", function(lua, "nn.functional.normalize", |lua, (x, opts): (Value, Option<Table>)| {
        let call = "nn.functional.normalize";
        let o: NormalizeOptions = options(lua, call, opts)?;
        wrap_result(lua, call, F::normalize(&tensor_arg(call, &x)?, o.p.unwrap_or(2.0), o.dim.unwrap_or(1), o.eps.unwrap_or(1e-12)))
    })?)?;
    f.set("cosine_similarity", function(lua, "nn.functional.cosine_similarity", |lua, (a, b, opts): (Value, Value, Option<Table>)| {
        let call = "nn.functional.cosine_similarity";
        let o: CosineOptions = options(lua, call, opts)?;
        wrap_result(lua, call, F::cosine_similarity(&tensor_arg(call, &a)?, &tensor_arg(call, &b)?, o.dim.unwrap_or(1), o.eps.unwrap_or(1e-8)))
    })?)?;
    f.set("binary_cross_entropy_with_logits", function(lua, "nn.functional.binary_cross_entropy_with_logits", |lua, (input, target, opts): (Value, Value, Option<Table>)| {
        let call = "nn.functional.binary_cross_entropy_with_logits";
        let (settings, tensors) = split_values(lua, opts, &["weight", "pos_weight"])?;
        let o: BceOptions = options_accepting(lua, call, settings, &["weight", "pos_weight"])?;
        let reduction = Reduction::parse(o.reduction.as_deref().unwrap_or("mean")).or_misuse(call)?;
        let (weight, pos_weight) = (optional_tensor_arg(call, &tensors[0])?, optional_tensor_arg(call, &tensors[1])?);
        wrap_result(lua, call, F::binary_cross_entropy_with_logits(&tensor_arg(call, &input)?, &tensor_arg(call, &target)?, weight.as_ref(), pos_weight.as_ref(), reduction))
    })?)?;
    f.set("binary_cross_entropy", function(lua, "nn.functional.binary_cross_entropy", |lua, (input, target, opts): (Value, Value, Option<Table>)| {
        let call = "nn.functional.binary_cross_entropy";
        let (settings, tensors) = split_values(lua, opts, &["weight"])?;
        let o: BceOptions = options_accepting(lua, call, settings, &["weight"])?;
        let reduction = Reduction::parse(o.reduction.as_deref().unwrap_or("mean")).or_misuse(call)?;
        let weight = optional_tensor_arg(call, &tensors[0])?;
        wrap_result(lua, call, F::binary_cross_entropy(&tensor_arg(call, &input)?, &tensor_arg(call, &target)?, weight.as_ref(), reduction))
    })?)?;
    f.set("nll_loss", function(lua, "nn.functional.nll_loss", |lua, (input, target, opts): (Value, Value, Option<Table>)| {
        let call = "nn.functional.nll_loss";
        let (settings, tensors) = split_values(lua, opts, &["weight"])?;
        let o: NllOptions = options_accepting(lua, call, settings, &["weight"])?;
        let reduction = Reduction::parse(o.reduction.as_deref().unwrap_or("mean")).or_misuse(call)?;
        let weight = optional_tensor_arg(call, &tensors[0])?;
        wrap_result(lua, call, F::nll_loss(&tensor_arg(call, &input)?, &tensor_arg(call, &target)?, weight.as_ref(), o.ignore_index.unwrap_or(-100), reduction))
    })?)?;
    f.set("kl_div", function(lua, "nn.functional.kl_div", |lua, (input, target, opts): (Value, Value, Option<Table>)| {
        let call = "nn.functional.kl_div";
        let o: KlOptions = options(lua, call, opts)?;
        let reduction = match o.reduction.as_deref().unwrap_or("mean") {
            "batchmean" => KlReduction::BatchMean,
            other => KlReduction::Plain(Reduction::parse(other).map_err(|_| misuse(call, format!("unknown reduction '{other}' (expected mean, sum, none or batchmean)")))?),
        };
        wrap_result(lua, call, F::kl_div(&tensor_arg(call, &input)?, &tensor_arg(call, &target)?, reduction, o.log_target.unwrap_or(false)))
    })?)?;
    f.set("pad", function(lua, "nn.functional.pad", |lua, (x, pad, opts): (Value, Value, Option<Table>)| {
        let call = "nn.functional.pad";
        let o: PadOptions = options(lua, call, opts)?;
        wrap_result(lua, call, F::pad(&tensor_arg(call, &x)?, &shape_arg(call, pad)?, o.mode.as_deref().unwrap_or("constant"), o.value.unwrap_or(0.0)))
    })?)?;
    f.set("one_hot", function(lua, "nn.functional.one_hot", |lua, (ids, num_classes): (Value, Option<i64>)| {
        let call = "nn.functional.one_hot";
        wrap_result(lua, call, F::one_hot(&tensor_arg(call, &ids)?, num_classes.unwrap_or(-1)))
    })?)?;
    // Activations, as functions of a tensor (the same ops as the tensor methods).
    for name in ["relu", "gelu", "silu", "tanh", "sigmoid", "softmax", "log_softmax"] {
        let method = name;
        f.set(name, function(lua, format!("nn.functional.{name}"), move |_, (x, arg): (AnyUserData, Value)| {
            if !x.is::<LuaTensor>() {
                return Err(misuse(&format!("nn.functional.{method}"), "expected a tensor"));
            }
            x.call_method::<Value>(method, arg)
        })?)?;
    }
    Ok(f)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct KaimingOptions {
    /// Negative slope of the rectifier after this layer (√5 for nn.Linear's default).
    a: Option<f64>,
}

fn init_table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("kaiming_uniform_", function(lua, "nn.init.kaiming_uniform_", |lua, (ud, opts): (AnyUserData, Option<Table>)| {
        let call = "nn.init.kaiming_uniform_";
        let o: KaimingOptions = options(lua, call, opts)?;
        in_place(call, &ud, |t| {
            init::kaiming_uniform_(t, o.a.unwrap_or(0.0)).map(|_| t.shallow_clone())
        })
    })?)?;
    t.set("uniform_fan_in_", function(lua, "nn.init.uniform_fan_in_", |_, (ud, fan_in): (AnyUserData, i64)| {
        let call = "nn.init.uniform_fan_in_";
        in_place(call, &ud, |t| {
            init::uniform_fan_in_(t, fan_in).map(|_| t.shallow_clone())
        })
    })?)?;
    Ok(t)
}

/// The names a pattern is matched against (argument 2 of `nn.matching`): a list of strings.
fn name_list(call: &str, names: &Value) -> mlua::Result<Vec<String>> {
    let Value::Table(list) = names else { return Err(misuse(call, format!("argument 2 (names): expected a list of strings, got {}", describe(names)))) };
    let mut out = Vec::new();
    for (i, v) in list.clone().sequence_values::<Value>().enumerate() {
        match v? {
            Value::String(s) => out.push(s.to_string_lossy()),
            other => return Err(misuse(call, format!("argument 2 (names): element {} must be a string, got {}", i + 1, describe(&other)))),
        }
    }
    Ok(out)
}

/// The native `nn` table: `{ functional = …, init = …, select_names, named_parameter,
/// placement, is_native_module, describe }`.
pub fn create_table(lua: &Lua) -> mlua::Result<Table> {
    let nn = lua.create_table()?;
    nn.set("functional", functional(lua)?)?;
    nn.set("init", init_table(lua)?)?;
    // select_names(call, pattern, names, parameters?): the names the matcher picks, in order
    // (parameter names also by a module holding them); picking none is an error.
    nn.set("select_names", function(lua, "nn.select_names", |lua, (call, pattern, names, parameters): (String, Value, Value, Option<bool>)| {
        let matcher = matcher_arg(&call, &pattern)?;
        let names = name_list(&call, &names)?;
        let mut picked = Vec::new();
        for n in names {
            let hit = if parameters.unwrap_or(false) { matcher.matches_parameter(&n) } else { matcher.matches(&n) };
            if hit.or_misuse(&call)? {
                picked.push(n);
            }
        }
        if picked.is_empty() && !matches!(pattern, Value::Nil) {
            return Err(misuse(&call, format!("{} matched nothing", matcher.describe())));
        }
        lua.create_sequence_from(picked)
    })?)?;
    // named_parameter(t, name): a handle of t that carries its name in a module tree.
    nn.set("named_parameter", function(lua, "nn.named_parameter", |lua, (t, name): (Value, String)| {
        let call = "nn.named_parameter";
        wrap_named(lua, tensor_arg(call, &t)?, &name)
    })?)?;
    // placement(name): { dtype = name } or { device = name }, for `m:to("bf16")` / `m:to("cuda")`.
    nn.set("placement", function(lua, "nn.placement", |lua, name: String| {
        let t = lua.create_table()?;
        match parse_placement(&name).or_misuse("module.to")? {
            Placement::Dtype(_) => t.set("dtype", name)?,
            Placement::Device(_) => t.set("device", name)?,
        }
        Ok(t)
    })?)?;
    nn.set("is_native_module", function(lua, "nn.is_native_module", |_, v: Value| Ok(matches!(&v, Value::UserData(ud) if ud.is::<LuaModule>())))?)?;
    // describe(v): a value as error messages show it ("number 1e300", "a tensor", "a table").
    nn.set("describe", function(lua, "nn.describe", |_, v: Value| Ok(describe(&v)))?)?;
    Ok(nn)
}
