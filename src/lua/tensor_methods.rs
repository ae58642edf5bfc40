//! The methods and metamethods of `Tensor` userdata, one line of binding each where possible:
//! information, conversion, autograd, arithmetic, comparison, reduction, shape and elementwise
//! ops; arithmetic metamethods, `t[i]` row access, `#t` and PyTorch printing.

use mlua::{Lua, MetaMethod, MultiValue, Table, UserData, UserDataFields, UserDataMethods, Value};
use serde::Deserialize;
use tch::{Kind, Tensor};

use super::args::{describe, integer, int_list, misuse, no_more, options, text, trailing_options, OrMisuse};
use super::tensor::{in_place, operand, tensor_arg, wrap, wrap_result, LuaTensor};
use super::values::{tensor_item, tensor_to_list};
use crate::tensor::create::copy_of;
use crate::tensor::guard;
use crate::tensor::index::{self, Index};
use crate::tensor::scalar::{self, Arith, Compare, Operand};
use crate::tensor::{device_name, dtype_name, format_tensor, parse_device, parse_dtype, parse_placement, Placement};
use super::callbacks::{self as callbacks, method_ud};

/// Registers a method whose closure gets the tensor itself (a freed tensor is an error naming
/// the method).
fn method<M, A, R, F>(methods: &mut M, name: &'static str, f: F)
where
    M: UserDataMethods<LuaTensor>,
    A: mlua::FromLuaMulti,
    R: mlua::IntoLuaMulti,
    F: Fn(&Lua, &Tensor, A) -> mlua::Result<R> + 'static,
{
    let call = format!("tensor.{name}");
    callbacks::method(methods, name, call.clone(), move |lua, this: &LuaTensor, args: A| f(lua, this.get(&call)?, args));
}

/// Registers an out-of-place op with no arguments: `t:exp()`.
macro_rules! unary {
    ($methods:ident, $($name:literal => $f:ident),* $(,)?) => {$(
        method($methods, $name, |lua, t, ()| {
            wrap_result(lua, concat!("tensor.", $name), t.$f())
        });
    )*};
}

/// Registers an in-place op with no arguments that returns the tensor itself: `t:exp_()`.
macro_rules! unary_in_place {
    ($methods:ident, $($name:literal => $f:ident),* $(,)?) => {$(
        method_ud($methods, $name, concat!("tensor.", $name), |_, ud, (): ()| {
            in_place(concat!("tensor.", $name), &ud, |t| t.$f())
        });
    )*};
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReduceOptions {
    /// Keep reduced dimensions with size 1.
    keepdim: Option<bool>,
    /// Degrees-of-freedom correction for `std` and `var` (1 = unbiased, PyTorch's default).
    correction: Option<i64>,
}

/// `(dim?, keepdim? | {keepdim=, correction=})` as reductions take them; `dim` may be a list.
struct Reduce {
    dims: Option<Vec<i64>>,
    keepdim: bool,
    correction: i64,
}

fn reduce_args(lua: &Lua, call: &str, args: MultiValue) -> mlua::Result<Reduce> {
    let mut args: Vec<Value> = args.into_iter().collect();
    let mut dims = None;
    match args.first() {
        Some(Value::Integer(_) | Value::Number(_)) => dims = Some(vec![integer(call, &args.remove(0))?]),
        Some(Value::Table(t)) if t.raw_len() > 0 => {
            let list = t.sequence_values::<Value>().map(|v| integer(call, &v?)).collect::<mlua::Result<_>>()?;
            dims = Some(list);
            args.remove(0);
        }
        Some(Value::Nil) => {
            args.remove(0);
        }
        _ => {}
    }
    let mut keepdim = false;
    if let Some(Value::Boolean(b)) = args.first() {
        keepdim = *b;
        args.remove(0);
    }
    let opts: ReduceOptions = options(lua, call, trailing_options(&mut args))?;
    no_more(call, &args)?;
    Ok(Reduce { dims, keepdim: opts.keepdim.unwrap_or(keepdim), correction: opts.correction.unwrap_or(1) })
}

/// The dims to reduce over: the given ones, checked against the tensor's rank, or all of them.
fn reduce_dims(call: &str, t: &Tensor, dims: &Option<Vec<i64>>) -> mlua::Result<Vec<i64>> {
    match dims {
        None => Ok((0..t.dim() as i64).collect()),
        Some(list) => {
            for d in list {
                normalize_dim(call, *d, t.dim())?;
            }
            Ok(list.clone())
        }
    }
}

fn one_dim(call: &str, r: &Reduce) -> mlua::Result<Option<i64>> {
    match r.dims.as_deref() {
        None => Ok(None),
        Some([d]) => Ok(Some(*d)),
        Some(_) => Err(misuse(call, "takes a single dim")),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ToOptions {
    dtype: Option<String>,
    device: Option<String>,
}

/// `t:to("bf16")`, `t:to("cuda")`, `t:to{ dtype = "f16", device = "cuda:0" }`.
fn to(lua: &Lua, t: &Tensor, arg: Value) -> mlua::Result<LuaTensor> {
    let call = "tensor.to";
    let (dtype, device) = match arg {
        Value::String(s) => match parse_placement(&text(call, "the dtype or device", &s)?).or_misuse(call)? {
            Placement::Dtype(kind) => (Some(kind), None),
            Placement::Device(device) => (None, Some(device)),
        },
        Value::Table(table) => {
            let o: ToOptions = options(lua, call, Some(table))?;
            let dtype = o.dtype.as_deref().map(parse_dtype).transpose().or_misuse(call)?;
            let device = o.device.as_deref().map(parse_device).transpose().or_misuse(call)?;
            (dtype, device)
        }
        other => return Err(misuse(call, format!("expected a dtype, a device or an options table, got {}", describe(&other)))),
    };
    let kind = dtype.unwrap_or(t.kind());
    let device = device.unwrap_or(t.device());
    wrap_result(lua, call, t.f_to_dtype_layout((kind, device), false, false))
}

fn binary(lua: &Lua, call: &str, op: Arith, t: &Tensor, other: Value, alpha: Option<f64>) -> mlua::Result<LuaTensor> {
    let other = operand(call, &other)?;
    let other = match (alpha, other) {
        (Some(a), Operand::Tensor(o)) => Operand::Tensor(Arith::Mul.apply(&Operand::Tensor(o), &Operand::Float(a)).or_misuse(call)?),
        (Some(a), Operand::Int(i)) => Operand::Float(i as f64 * a),
        (Some(a), Operand::Float(f)) => Operand::Float(f * a),
        (None, o) => o,
    };
    wrap_result(lua, call, op.apply(&Operand::Tensor(t.shallow_clone()), &other))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AlphaOptions {
    /// Multiplier of the other operand (`add(x, {alpha = 2})` is `self + 2 * x`).
    alpha: Option<f64>,
}

fn add_binary<M: UserDataMethods<LuaTensor>>(methods: &mut M, name: &'static str, op: Arith) {
    method(methods, name, move |lua, t, (other, opts): (Value, Option<Table>)| {
        let call = format!("tensor.{name}");
        let o: AlphaOptions = options(lua, &call, opts)?;
        binary(lua, &call, op, t, other, o.alpha)
    });
    let in_place_name = format!("{name}_");
    method_ud(methods, &in_place_name.clone(), format!("tensor.{in_place_name}"), move |lua, ud, (other, opts): (Value, Option<Table>)| {
        let call = format!("tensor.{in_place_name}");
        let o: AlphaOptions = options(lua, &call, opts)?;
        let this = ud.borrow::<LuaTensor>().map_err(|e| misuse(&call, e))?.get(&call)?.shallow_clone();
        let result = binary(lua, &call, op, &this, other, o.alpha)?;
        in_place(&call, &ud, |t| t.f_copy_(result.get(&call)?).map(|_| t.shallow_clone()).or_misuse(&call))
    });
}

fn add_compare<M: UserDataMethods<LuaTensor>>(methods: &mut M, name: &'static str, how: Compare) {
    method(methods, name, move |lua, t, other: Value| {
        let call = format!("tensor.{name}");
        let other = operand(&call, &other)?;
        wrap_result(lua, &call, how.apply(t, &other))
    });
}

fn tensors_to_lua(lua: &Lua, parts: Vec<Tensor>) -> mlua::Result<Table> {
    let table = lua.create_table()?;
    for p in parts {
        table.raw_push(wrap(lua, p)?)?;
    }
    Ok(table)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ClampOptions {
    min: Option<f64>,
    max: Option<f64>,
}

/// `(min, max)`, `(min)`, `(nil, max)` or `{ min =, max = }`; integer bounds keep an integer
/// tensor's dtype, as Python scalars do.
fn clamp_bounds(lua: &Lua, call: &str, a: Value, b: Value) -> mlua::Result<(Option<Operand>, Option<Operand>)> {
    let (min, max) = if let Value::Table(t) = a {
        let o: ClampOptions = options(lua, call, Some(t))?;
        (o.min.map(Operand::number), o.max.map(Operand::number))
    } else {
        let bound = |v: Value| -> mlua::Result<Option<Operand>> {
            match v {
                Value::Nil => Ok(None),
                Value::Integer(i) => Ok(Some(Operand::Int(i))),
                Value::Number(n) => Ok(Some(Operand::Float(n))),
                other => Err(misuse(call, format!("expected a number or nil, got {}", describe(&other)))),
            }
        };
        (bound(a)?, bound(b)?)
    };
    if min.is_none() && max.is_none() {
        return Err(misuse(call, "needs at least one of min and max"));
    }
    Ok((min, max))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BackwardOptions {
    /// Keep the graph so that backward can run through it again.
    retain_graph: Option<bool>,
}

/// `loss:backward()`, `y:backward(grad)`, `loss:backward{ retain_graph = true }`.
fn backward(lua: &Lua, t: &Tensor, args: MultiValue) -> mlua::Result<()> {
    let call = "tensor.backward";
    let mut args: Vec<Value> = args.into_iter().collect();
    let opts: BackwardOptions = options(lua, call, trailing_options(&mut args))?;
    let grad = match args.first() {
        Some(v @ Value::UserData(_)) => Some(tensor_arg(call, v)?),
        None | Some(Value::Nil) => None,
        Some(other) => return Err(misuse(call, format!("expected a gradient tensor, got {}", describe(other)))),
    };
    crate::tensor::autograd::backward(t, grad.as_ref(), opts.retain_graph.unwrap_or(false)).or_misuse(call)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ScaleOptions {
    /// Multiplier of the tensor itself (default 1).
    beta: Option<f64>,
    /// Multiplier of the product (default 1).
    alpha: Option<f64>,
}

/// One entry of `slice`: a number picks, `{start, stop, step}` (any may be nil) slices.
fn index_spec(call: &str, v: Value) -> mlua::Result<Index> {
    match v {
        Value::Integer(_) | Value::Number(_) => Ok(Index::At(integer(call, &v)?)),
        Value::Table(t) => {
            let part = |i: usize| -> mlua::Result<Option<i64>> {
                match t.raw_get::<Value>(i)? {
                    Value::Nil => Ok(None),
                    v => Ok(Some(integer(call, &v)?)),
                }
            };
            Ok(Index::Range { start: part(1)?, stop: part(2)?, step: part(3)?.unwrap_or(1) })
        }
        other => Err(misuse(call, format!("each entry is a number or {{start, stop, step}}, got {}", describe(&other)))),
    }
}

/// A shape as Lua sees it: a sequence of sizes that prints like `torch.Size([3, 4])`.
pub fn size_table(lua: &Lua, size: &[i64]) -> mlua::Result<Table> {
    const KEY: &str = "moontune.size_metatable";
    let meta = match lua.named_registry_value::<Option<Table>>(KEY)? {
        Some(m) => m,
        None => {
            let m = lua.create_table()?;
            m.set("__tostring", lua.create_function(|_, t: Table| {
                let dims = t.sequence_values::<i64>().map(|d| d.map(|d| d.to_string())).collect::<mlua::Result<Vec<_>>>()?;
                Ok(format!("torch.Size([{}])", dims.join(", ")))
            })?)?;
            lua.set_named_registry_value(KEY, m.clone())?;
            m
        }
    };
    let t = lua.create_sequence_from(size.iter().copied())?;
    t.set_metatable(Some(meta))?;
    Ok(t)
}

fn register<M: UserDataMethods<LuaTensor>>(methods: &mut M) {
    // Information.
    method(methods, "shape", |lua, t, ()| size_table(lua, &t.size()));
    method(methods, "size", |lua, t, dim: Option<i64>| {
        let size = t.size();
        match dim {
            None => Ok(Value::Table(size_table(lua, &size)?)),
            Some(d) => Ok(Value::Integer(size[normalize_dim("tensor.size", d, size.len())?])),
        }
    });
    method(methods, "dim", |_, t, ()| Ok(t.dim()));
    method(methods, "numel", |_, t, ()| Ok(t.numel()));
    method(methods, "dtype", |_, t, ()| Ok(dtype_name(t.kind())));
    method(methods, "device", |_, t, ()| Ok(device_name(t.device())));
    method(methods, "is_contiguous", |_, t, ()| Ok(t.is_contiguous()));
    method(methods, "item", |lua, t, ()| tensor_item(lua, t));
    method(methods, "tolist", |lua, t, ()| tensor_to_list(lua, t));

    // Conversion.
    method(methods, "to", |lua, t, arg: Value| to(lua, t, arg));
    for (name, kind) in [("float", Kind::Float), ("double", Kind::Double), ("half", Kind::Half), ("bfloat16", Kind::BFloat16), ("long", Kind::Int64), ("int", Kind::Int), ("bool", Kind::Bool)] {
        method(methods, name, move |lua, t, ()| wrap_result(lua, &format!("tensor.{name}"), t.f_to_kind(kind)));
    }
    method(methods, "cpu", |lua, t, ()| wrap_result(lua, "tensor.cpu", t.f_to_device(tch::Device::Cpu)));
    method(methods, "cuda", |lua, t, index: Option<i64>| {
        let device = parse_device(&format!("cuda:{}", index.unwrap_or(0))).or_misuse("tensor.cuda")?;
        wrap_result(lua, "tensor.cuda", t.f_to_device(device))
    });
    unary!(methods, "detach" => f_detach, "contiguous" => f_contiguous);
    method(methods, "clone", |lua, t, ()| wrap_result(lua, "tensor.clone", copy_of(t)));

    // Autograd.
    method(methods, "requires_grad", |_, t, ()| Ok(t.requires_grad()));
    method_ud(methods, "requires_grad_", "tensor.requires_grad_", |_, ud, flag: Option<bool>| {
        in_place("tensor.requires_grad_", &ud, |t| t.f_requires_grad_(flag.unwrap_or(true)))
    });
    method(methods, "backward", |lua, t, args: MultiValue| backward(lua, t, args));
    unary_in_place!(methods, "detach_" => f_detach_);

    // Arithmetic and comparison.
    add_binary(methods, "add", Arith::Add);
    add_binary(methods, "sub", Arith::Sub);
    add_binary(methods, "mul", Arith::Mul);
    add_binary(methods, "div", Arith::Div);
    add_binary(methods, "pow", Arith::Pow);
    method(methods, "matmul", |lua, t, other: Value| {
        let other = tensor_arg("tensor.matmul", &other)?;
        wrap_result(lua, "tensor.matmul", t.f_matmul(&other))
    });
    method(methods, "mm", |lua, t, other: Value| wrap_result(lua, "tensor.mm", t.f_mm(&tensor_arg("tensor.mm", &other)?)));
    method(methods, "bmm", |lua, t, other: Value| wrap_result(lua, "tensor.bmm", t.f_bmm(&tensor_arg("tensor.bmm", &other)?)));
    method(methods, "outer", |lua, t, other: Value| wrap_result(lua, "tensor.outer", t.f_outer(&tensor_arg("tensor.outer", &other)?)));
    method(methods, "baddbmm", |lua, t, (b1, b2, opts): (Value, Value, Option<Table>)| {
        let call = "tensor.baddbmm";
        let o: ScaleOptions = options(lua, call, opts)?;
        let product = tensor_arg(call, &b1)?.f_bmm(&tensor_arg(call, &b2)?).or_misuse(call)?;
        let scaled = |x: Tensor, f: Option<f64>| Arith::Mul.apply(&Operand::Tensor(x), &Operand::number(f.unwrap_or(1.0)));
        let out = (|| -> anyhow::Result<Tensor> { Ok(scaled(t.shallow_clone(), o.beta)?.f_add(&scaled(product, o.alpha)?)?) })();
        wrap_result(lua, call, out)
    });
    // x:slice{ 0, {1, 3}, {nil, nil, 2} } is x[0, 1:3, ::2]: a number picks (and drops) a dim,
    // {start, stop, step} slices one (nil or {} = from the start, to the end, step 1).
    method(methods, "slice", |lua, t, spec: Table| {
        let call = "tensor.slice";
        let indices = spec.sequence_values::<Value>().map(|v| index_spec(call, v?)).collect::<mlua::Result<Vec<_>>>()?;
        wrap_result(lua, call, index::slice(t, &indices))
    });
    add_compare(methods, "eq", Compare::Eq);
    add_compare(methods, "ne", Compare::Ne);
    add_compare(methods, "lt", Compare::Lt);
    add_compare(methods, "le", Compare::Le);
    add_compare(methods, "gt", Compare::Gt);
    add_compare(methods, "ge", Compare::Ge);
    method(methods, "equal", |_, t, other: Value| t.f_equal(&tensor_arg("tensor.equal", &other)?).or_misuse("tensor.equal"));
    method(methods, "allclose", |lua, t, (other, opts): (Value, Option<Table>)| {
        #[derive(Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        struct Tolerances {
            rtol: Option<f64>,
            atol: Option<f64>,
        }
        let o: Tolerances = options(lua, "tensor.allclose", opts)?;
        let other = tensor_arg("tensor.allclose", &other)?;
        t.f_allclose(&other, o.rtol.unwrap_or(1e-5), o.atol.unwrap_or(1e-8), false).or_misuse("tensor.allclose")
    });
    method(methods, "logical_and", |lua, t, o: Value| wrap_result(lua, "tensor.logical_and", t.f_logical_and(&tensor_arg("tensor.logical_and", &o)?)));
    method(methods, "logical_or", |lua, t, o: Value| wrap_result(lua, "tensor.logical_or", t.f_logical_or(&tensor_arg("tensor.logical_or", &o)?)));
    unary!(methods, "logical_not" => f_logical_not, "neg" => f_neg, "all" => f_all, "any" => f_any);
    unary_in_place!(methods, "neg_" => f_neg_, "zero_" => f_zero_);

    // Reductions.
    method(methods, "sum", |lua, t, args: MultiValue| {
        let r = reduce_args(lua, "tensor.sum", args)?;
        let t = t;
        let dims = reduce_dims("tensor.sum", t, &r.dims)?;
        wrap_result(lua, "tensor.sum", t.f_sum_dim_intlist(dims.as_slice(), r.keepdim, None::<Kind>))
    });
    method(methods, "mean", |lua, t, args: MultiValue| {
        let r = reduce_args(lua, "tensor.mean", args)?;
        let t = t;
        let dims = reduce_dims("tensor.mean", t, &r.dims)?;
        wrap_result(lua, "tensor.mean", t.f_mean_dim(dims.as_slice(), r.keepdim, None::<Kind>))
    });
    for (name, var) in [("std", false), ("var", true)] {
        method(methods, name, move |lua, t, args: MultiValue| {
            let call = format!("tensor.{name}");
            let r = reduce_args(lua, &call, args)?;
            let t = t;
            let dims = reduce_dims(&call, t, &r.dims)?;
            if !crate::tensor::dtype::is_floating(t.kind()) {
                return Err(misuse(&call, format!("needs a floating-point tensor, got {}", dtype_name(t.kind()))));
            }
            let out = guard::catch(|| {
                Ok(if var {
                    t.f_var_correction(dims.as_slice(), r.correction, r.keepdim)?
                } else {
                    t.f_std_correction(dims.as_slice(), r.correction, r.keepdim)?
                })
            });
            wrap_result(lua, &call, out)
        });
    }
    for (name, is_max) in [("max", true), ("min", false)] {
        method(methods, name, move |lua, t, args: MultiValue| {
            let call = format!("tensor.{name}");
            let t = t;
            if let Some(v @ Value::UserData(_)) = args.front() {
                let other = tensor_arg(&call, v)?;
                let out = if is_max { t.f_maximum(&other) } else { t.f_minimum(&other) };
                return Ok(MultiValue::from_iter([mlua::IntoLua::into_lua(wrap_result(lua, &call, out)?, lua)?]));
            }
            let r = reduce_args(lua, &call, args)?;
            match one_dim(&call, &r)? {
                None => {
                    let out = if is_max { t.f_max() } else { t.f_min() };
                    Ok(MultiValue::from_iter([mlua::IntoLua::into_lua(wrap_result(lua, &call, out)?, lua)?]))
                }
                Some(d) => {
                    let (values, indices) = if is_max { t.f_max_dim(d, r.keepdim) } else { t.f_min_dim(d, r.keepdim) }.or_misuse(&call)?;
                    Ok(MultiValue::from_iter([
                        mlua::IntoLua::into_lua(wrap(lua, values)?, lua)?,
                        mlua::IntoLua::into_lua(wrap(lua, indices)?, lua)?,
                    ]))
                }
            }
        });
    }
    for (name, is_max) in [("argmax", true), ("argmin", false)] {
        method(methods, name, move |lua, t, args: MultiValue| {
            let call = format!("tensor.{name}");
            let r = reduce_args(lua, &call, args)?;
            let d = one_dim(&call, &r)?;
            let t = t;
            wrap_result(lua, &call, if is_max { t.f_argmax(d, r.keepdim) } else { t.f_argmin(d, r.keepdim) })
        });
    }
    method(methods, "norm", |lua, t, args: MultiValue| {
        let call = "tensor.norm";
        let mut args: Vec<Value> = args.into_iter().collect();
        let p = match args.first() {
            Some(Value::Integer(i)) => { let p = *i as f64; args.remove(0); p }
            Some(Value::Number(n)) => { let p = *n; args.remove(0); p }
            Some(Value::Nil) => { args.remove(0); 2.0 }
            _ => 2.0,
        };
        let r = reduce_args(lua, call, MultiValue::from_iter(args))?;
        let t = t;
        let dims = reduce_dims(call, t, &r.dims)?;
        if !crate::tensor::dtype::is_floating(t.kind()) {
            return Err(misuse(call, format!("needs a floating-point tensor, got {}", dtype_name(t.kind()))));
        }
        wrap_result(lua, call, guard::catch(|| Ok(t.f_norm_scalaropt_dim(p, dims.as_slice(), r.keepdim)?)))
    });

    // Shape.
    // `repeat` is a Lua keyword: call it as x["repeat"](x, 2, 1), or use tile.
    for name in ["view", "reshape", "permute", "expand", "repeat", "tile"] {
        method(methods, name, move |lua, t, args: MultiValue| {
            let call = format!("tensor.{name}");
            let (list, rest) = int_list(&call, args)?;
            no_more(&call, &rest)?;
            let t = t;
            let out = match name {
                "view" => t.f_view(list.as_slice()),
                "reshape" => t.f_reshape(list.as_slice()),
                "permute" => t.f_permute(list.as_slice()),
                "expand" => t.f_expand(list.as_slice(), false),
                "tile" => t.f_tile(list.as_slice()),
                _ => t.f_repeat(list.as_slice()),
            };
            wrap_result(lua, &call, out)
        });
    }
    method(methods, "transpose", |lua, t, (a, b): (i64, i64)| wrap_result(lua, "tensor.transpose", t.f_transpose(a, b)));
    method(methods, "t", |lua, t, ()| wrap_result(lua, "tensor.t", t.f_tr()));
    method(methods, "unsqueeze", |lua, t, d: i64| wrap_result(lua, "tensor.unsqueeze", t.f_unsqueeze(d)));
    method(methods, "squeeze", |lua, t, d: Option<i64>| {
        let t = t;
        wrap_result(lua, "tensor.squeeze", match d { Some(d) => t.f_squeeze_dim(d), None => t.f_squeeze() })
    });
    method(methods, "flatten", |lua, t, (start, end): (Option<i64>, Option<i64>)| {
        wrap_result(lua, "tensor.flatten", t.f_flatten(start.unwrap_or(0), end.unwrap_or(-1)))
    });
    method(methods, "expand_as", |lua, t, o: Value| wrap_result(lua, "tensor.expand_as", t.f_expand_as(&tensor_arg("tensor.expand_as", &o)?)));
    method(methods, "split", |lua, t, (size, dim): (Value, Option<i64>)| {
        let call = "tensor.split";
        let t = t;
        let dim = dim.unwrap_or(0);
        let parts = match &size {
            Value::Table(_) => {
                let (sizes, _) = int_list(call, MultiValue::from_iter([size.clone()]))?;
                t.f_split_with_sizes(sizes.as_slice(), dim)
            }
            v => t.f_split(integer(call, v)?, dim),
        };
        tensors_to_lua(lua, parts.or_misuse(call)?)
    });
    method(methods, "chunk", |lua, t, (n, dim): (i64, Option<i64>)| {
        tensors_to_lua(lua, t.f_chunk(n, dim.unwrap_or(0)).or_misuse("tensor.chunk")?)
    });
    method(methods, "narrow", |lua, t, (dim, start, len): (i64, i64, i64)| {
        wrap_result(lua, "tensor.narrow", t.f_narrow(dim, start, len))
    });
    method(methods, "index_select", |lua, t, (dim, index): (i64, Value)| {
        let index = tensor_arg("tensor.index_select", &index)?;
        wrap_result(lua, "tensor.index_select", t.f_index_select(dim, &index))
    });
    method(methods, "gather", |lua, t, (dim, index): (i64, Value)| {
        let index = tensor_arg("tensor.gather", &index)?;
        wrap_result(lua, "tensor.gather", t.f_gather(dim, &index, false))
    });
    method(methods, "scatter", |lua, t, (dim, index, src): (i64, Value, Value)| {
        let call = "tensor.scatter";
        let index = tensor_arg(call, &index)?;
        let t = t;
        let src = match operand(call, &src)? {
            Operand::Tensor(s) => s,
            number => number.to_tensor_like(t).and_then(|v| Ok(v.f_expand_as(&index)?)).or_misuse(call)?,
        };
        wrap_result(lua, call, t.f_scatter(dim, &index, &src))
    });
    method(methods, "masked_fill", |lua, t, (mask, value): (Value, Value)| {
        let call = "tensor.masked_fill";
        let mask = tensor_arg(call, &mask)?;
        wrap_result(lua, call, scalar::masked_fill(t, &mask, &operand(call, &value)?))
    });
    method_ud(methods, "masked_fill_", "tensor.masked_fill_", |_, ud, (mask, value): (Value, Value)| {
        let call = "tensor.masked_fill_";
        let mask = tensor_arg(call, &mask)?;
        let value = operand(call, &value)?;
        in_place(call, &ud, |t| {
            let filled = scalar::masked_fill(t, &mask, &value)?;
            t.f_copy_(&filled).map_err(anyhow::Error::from)
        })
    });
    method(methods, "where", |lua, t, (cond, other): (Value, Value)| {
        let call = "tensor.where";
        let cond = tensor_arg(call, &cond)?;
        let t = t;
        let other = operand(call, &other)?.to_tensor().or_misuse(call)?;
        wrap_result(lua, call, t.f_where_self(&cond, &other))
    });

    // Elementwise math.
    unary!(methods,
        "exp" => f_exp, "log" => f_log, "sqrt" => f_sqrt, "rsqrt" => f_rsqrt, "abs" => f_abs,
        "tanh" => f_tanh, "sigmoid" => f_sigmoid, "relu" => f_relu, "silu" => f_silu,
        "sin" => f_sin, "cos" => f_cos, "square" => f_square, "reciprocal" => f_reciprocal,
    );
    unary_in_place!(methods,
        "exp_" => f_exp_, "log_" => f_log_, "sqrt_" => f_sqrt_, "rsqrt_" => f_rsqrt_, "abs_" => f_abs_,
        "tanh_" => f_tanh_, "sigmoid_" => f_sigmoid_, "relu_" => f_relu_, "silu_" => f_silu_,
    );
    method(methods, "gelu", |lua, t, approximate: Option<String>| {
        let approximate = approximate.unwrap_or_else(|| "none".into());
        if approximate != "none" && approximate != "tanh" {
            return Err(misuse("tensor.gelu", format!("approximate must be 'none' or 'tanh', got '{approximate}'")));
        }
        wrap_result(lua, "tensor.gelu", t.f_gelu(&approximate))
    });
    method(methods, "tril", |lua, t, diagonal: Option<i64>| wrap_result(lua, "tensor.tril", t.f_tril(diagonal.unwrap_or(0))));
    method(methods, "triu", |lua, t, diagonal: Option<i64>| wrap_result(lua, "tensor.triu", t.f_triu(diagonal.unwrap_or(0))));
    method(methods, "cumsum", |lua, t, dim: i64| wrap_result(lua, "tensor.cumsum", t.f_cumsum(dim, None::<Kind>)));
    method(methods, "multinomial", |lua, t, (n, replacement): (i64, Option<bool>)| {
        wrap_result(lua, "tensor.multinomial", t.f_multinomial(n, replacement.unwrap_or(false)))
    });
    method(methods, "topk", |lua, t, (k, dim): (i64, Option<i64>)| {
        let (values, indices) = t.f_topk(k, dim.unwrap_or(-1), true, true).or_misuse("tensor.topk")?;
        Ok((wrap(lua, values)?, wrap(lua, indices)?))
    });
    method(methods, "sort", |lua, t, (dim, descending): (Option<i64>, Option<bool>)| {
        let (values, indices) = t.f_sort(dim.unwrap_or(-1), descending.unwrap_or(false)).or_misuse("tensor.sort")?;
        Ok((wrap(lua, values)?, wrap(lua, indices)?))
    });
    method(methods, "softmax", |lua, t, dim: i64| wrap_result(lua, "tensor.softmax", t.f_softmax(dim, None::<Kind>)));
    method(methods, "log_softmax", |lua, t, dim: i64| wrap_result(lua, "tensor.log_softmax", t.f_log_softmax(dim, None::<Kind>)));
    method(methods, "clamp", |lua, t, (a, b): (Value, Value)| {
        let (min, max) = clamp_bounds(lua, "tensor.clamp", a, b)?;
        wrap_result(lua, "tensor.clamp", scalar::clamp(t, min.as_ref(), max.as_ref()))
    });
    method_ud(methods, "clamp_", "tensor.clamp_", |lua, ud, (a, b): (Value, Value)| {
        let (min, max) = clamp_bounds(lua, "tensor.clamp_", a, b)?;
        in_place("tensor.clamp_", &ud, |t| {
            let clamped = scalar::clamp(t, min.as_ref(), max.as_ref())?;
            t.f_copy_(&clamped).map_err(anyhow::Error::from)
        })
    });
    method_ud(methods, "fill_", "tensor.fill_", |_, ud, value: Value| {
        let call = "tensor.fill_";
        match operand(call, &value)? {
            Operand::Tensor(_) => Err(misuse(call, "expected a number; use copy_ for a tensor")),
            number => in_place(call, &ud, |t| scalar::fill_(t, &number)),
        }
    });
    method_ud(methods, "copy_", "tensor.copy_", |_, ud, src: Value| {
        let src = tensor_arg("tensor.copy_", &src)?;
        in_place("tensor.copy_", &ud, |t| t.f_copy_(&src).map(|_| t.shallow_clone()))
    });
    method_ud(methods, "set_data", "tensor.set_data", |_, ud, src: Value| {
        let src = tensor_arg("tensor.set_data", &src)?;
        in_place("tensor.set_data", &ud, |t| t.f_set_data(&src).map(|_| t.shallow_clone()))
    });
    method_ud(methods, "uniform_", "tensor.uniform_", |_, ud, (a, b): (Option<f64>, Option<f64>)| {
        in_place("tensor.uniform_", &ud, |t| t.f_uniform_(a.unwrap_or(0.0), b.unwrap_or(1.0)))
    });
    method_ud(methods, "normal_", "tensor.normal_", |_, ud, (mean, std): (Option<f64>, Option<f64>)| {
        in_place("tensor.normal_", &ud, |t| t.f_normal_(mean.unwrap_or(0.0), std.unwrap_or(1.0)))
    });
}

/// A 0-based dim (negative from the end) as an index into a shape of `rank` dims.
pub fn normalize_dim(call: &str, dim: i64, rank: usize) -> mlua::Result<usize> {
    let r = rank as i64;
    if dim < -r || dim >= r {
        return Err(misuse(call, format!("dim {dim} out of range for a tensor with {rank} dims (expected {} to {})", -r, r - 1)));
    }
    Ok(if dim < 0 { (dim + r) as usize } else { dim as usize })
}

fn add_arith_meta<M: UserDataMethods<LuaTensor>>(methods: &mut M, meta: MetaMethod, op: Arith) {
    methods.add_meta_function(meta, move |lua, (a, b): (Value, Value)| {
        let call = format!("tensor.{}", op.name());
        let (a, b) = (operand(&call, &a)?, operand(&call, &b)?);
        wrap_result(lua, &call, op.apply(&a, &b))
    });
}

impl UserData for LuaTensor {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_meta_field(MetaMethod::Type, "tensor");
        fields.add_field_method_get("grad", |lua, this| {
            let grad = this.get("tensor.grad")?.f_grad().or_misuse("tensor.grad")?;
            if grad.defined() {
                Ok(Some(wrap(lua, grad)?))
            } else {
                Ok(None)
            }
        });
        // `p.grad = nil` unsets the gradient; `p.grad = g` sets it (same shape, dtype, device).
        fields.add_field_method_set("grad", |_, this, v: Value| {
            let call = "tensor.grad";
            let g = super::tensor::optional_tensor_arg(call, &v)?;
            crate::tensor::shim::set_grad(this.get(call)?, g.as_ref()).or_misuse(call)
        });
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        add_arith_meta(methods, MetaMethod::Add, Arith::Add);
        add_arith_meta(methods, MetaMethod::Sub, Arith::Sub);
        add_arith_meta(methods, MetaMethod::Mul, Arith::Mul);
        add_arith_meta(methods, MetaMethod::Div, Arith::Div);
        add_arith_meta(methods, MetaMethod::Pow, Arith::Pow);
        methods.add_meta_method(MetaMethod::Unm, |lua, this, ()| wrap_result(lua, "tensor.neg", this.get("tensor.neg")?.f_neg()));
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| match this.get("tensor.__tostring") {
            Ok(t) => format_tensor(t).or_misuse("tensor.__tostring"),
            Err(_) => Ok("tensor(<freed>)".to_string()),
        });
        methods.add_meta_method(MetaMethod::Len, |_, this, ()| match this.get("tensor.__len")?.size().first() {
            Some(n) => Ok(*n),
            None => Err(misuse("tensor.__len", "a 0-dim tensor has no length")),
        });
        // t[i] is row i; t[mask] the elements a bool mask picks; t[ids] the rows int64 ids pick.
        methods.add_meta_method(MetaMethod::Index, |lua, this, key: Value| {
            let call = "tensor.__index";
            match key {
                Value::Integer(_) | Value::Number(_) => {
                    let i = integer(call, &key)?;
                    wrap_result(lua, call, this.get(call)?.f_select(0, i))
                }
                Value::UserData(_) => wrap_result(lua, call, index::take(this.get(call)?, &tensor_arg(call, &key)?)),
                other => Err(misuse(call, format!("no field or method {}", describe(&other)))),
            }
        });
        methods.add_meta_method(MetaMethod::NewIndex, |_, this, (key, value): (Value, Value)| {
            let call = "tensor.__newindex";
            if let Value::UserData(_) = key {
                return index::put_(this.get(call)?, &tensor_arg(call, &key)?, &operand(call, &value)?).or_misuse(call);
            }
            let i = integer(call, &key).map_err(|_| misuse(call, format!("cannot assign to {}", describe(&key))))?;
            let mut row = this.get(call)?.f_select(0, i).or_misuse(call)?;
            match operand(call, &value)? {
                Operand::Tensor(src) => row.f_copy_(&src).or_misuse(call),
                number => scalar::fill_(&mut row, &number).or_misuse(call),
            }
        });
        // a == b is a:equal(b) (Lua's == can only give a boolean): same shape and values.
        methods.add_meta_method(MetaMethod::Eq, |_, this, other: Value| {
            let Some(other) = super::tensor::as_tensor(&other) else { return Ok(false) };
            Ok(this.get("tensor.__eq")?.f_equal(&other).unwrap_or(false))
        });
        callbacks::method_mut(methods, "free", "tensor.free", |_, this: &mut LuaTensor, ()| {
            this.free();
            Ok(())
        });
        callbacks::method(methods, "param_name", "tensor.param_name", |_, this: &LuaTensor, ()| Ok(this.name().map(str::to_string)));
        register(methods);
    }
}
