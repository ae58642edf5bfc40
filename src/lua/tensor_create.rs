//! `mt.tensor`: making tensors (`tensor`, `zeros`, `randn`, `arange`, `*_like`, …) and the
//! functions over several tensors (`cat`, `stack`, `where`). Sizes are a sequence or leading
//! numbers; options are one trailing table `{ dtype =, device =, requires_grad = }`.

use mlua::{Function, Lua, MultiValue, Table, Value};
use serde::Deserialize;
use tch::{Device, Kind, Tensor};

use super::args::{integer, int_list, misuse, no_more, options, sizes_and_options, trailing_options, OrMisuse};
use super::tensor::{operand, tensor_arg, wrap, LuaTensor};
use super::values::tensor_from_value;
use crate::tensor::{guard, headroom};
use crate::tensor::scalar::{self, Operand};
use crate::tensor::{parse_device, parse_dtype};
use super::callbacks::{function};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateOptions {
    /// Element type; defaults to float32 (int64 for integer data and `randint`/integer `arange`).
    dtype: Option<String>,
    /// `"cpu"`, `"cuda"` or `"cuda:N"`; defaults to `"cpu"` (or the source's, for `*_like`).
    device: Option<String>,
    /// Track gradients for the new tensor.
    requires_grad: Option<bool>,
}

struct Placement {
    kind: Option<Kind>,
    device: Option<Device>,
    requires_grad: bool,
}

fn placement(lua: &Lua, call: &str, opts: Option<Table>) -> mlua::Result<Placement> {
    let o: CreateOptions = options(lua, call, opts)?;
    Ok(Placement {
        kind: o.dtype.as_deref().map(parse_dtype).transpose().or_misuse(call)?,
        device: o.device.as_deref().map(parse_device).transpose().or_misuse(call)?,
        requires_grad: o.requires_grad.unwrap_or(false),
    })
}

fn finish<E: std::fmt::Display>(lua: &Lua, call: &str, t: Result<Tensor, E>, p: &Placement) -> mlua::Result<LuaTensor> {
    let mut t = t.or_misuse(call)?;
    if p.requires_grad {
        t = t.f_requires_grad_(true).or_misuse(call)?;
    }
    wrap(lua, t)
}

/// Registers a constructor taking `(size..., opts?)`.
fn sized(lua: &Lua, table: &Table, name: &'static str, make: fn(&[i64], (Kind, Device)) -> Result<Tensor, tch::TchError>) -> mlua::Result<()> {
    let f = function(lua, format!("tensor.{name}"), move |lua, args: MultiValue| {
        let call = format!("tensor.{name}");
        let (size, opts, rest) = sizes_and_options(lua, &call, args)?;
        let p = placement(lua, &call, opts)?;
        no_more(&call, &rest)?;
        let options = (p.kind.unwrap_or(Kind::Float), p.device.unwrap_or(Device::Cpu));
        headroom::check_tensor(&size, options, &call).or_misuse(&call)?;
        finish(lua, &call, make(&size, options), &p)
    })?;
    table.set(name, f)
}

/// Registers a `*_like(t, opts?)` constructor.
fn like(lua: &Lua, table: &Table, name: &'static str, make: fn(&Tensor, (Kind, Device)) -> Result<Tensor, tch::TchError>) -> mlua::Result<()> {
    let f = function(lua, format!("tensor.{name}"), move |lua, (source, opts): (Value, Option<Table>)| {
        let call = format!("tensor.{name}");
        let source = tensor_arg(&call, &source)?;
        let p = placement(lua, &call, opts)?;
        let options = (p.kind.unwrap_or(source.kind()), p.device.unwrap_or(source.device()));
        headroom::check_tensor(&source.size(), options, &call).or_misuse(&call)?;
        finish(lua, &call, make(&source, options), &p)
    })?;
    table.set(name, f)
}

/// A tensor of `size` holding `value` (an empty tensor filled with a 0-dim one, so that every
/// failure, such as running out of memory, comes back as an error).
fn filled(size: &[i64], kind: Kind, device: Device, value: &Operand) -> anyhow::Result<Tensor> {
    headroom::check_tensor(size, (kind, device), "the tensor")?;
    let mut t = Tensor::f_empty(size, (kind, device))?;
    scalar::fill_(&mut t, value)?;
    Ok(t)
}

/// Checks an arange range the way PyTorch does, before libtorch sees it.
fn check_range(start: f64, end: f64, step: f64) -> Result<(), String> {
    if !(start.is_finite() && end.is_finite() && step.is_finite()) {
        return Err("start, end and step must be finite".into());
    }
    if step == 0.0 {
        return Err("step must be nonzero".into());
    }
    let n = ((end - start) / step).ceil();
    if n < 0.0 {
        return Err(format!("the range {start}..{end} and step {step} have inconsistent signs"));
    }
    if n > (1u64 << 48) as f64 {
        return Err(format!("the range {start}..{end} with step {step} has too many elements ({n:e})"));
    }
    Ok(())
}

fn tensor_list(call: &str, list: &Table) -> mlua::Result<Vec<Tensor>> {
    let mut out = Vec::new();
    for v in list.sequence_values::<Value>() {
        out.push(tensor_arg(call, &v?)?);
    }
    if out.is_empty() {
        return Err(misuse(call, "expected a non-empty sequence of tensors"));
    }
    Ok(out)
}

fn number(call: &str, v: &Value) -> mlua::Result<f64> {
    match v {
        Value::Integer(i) => Ok(*i as f64),
        Value::Number(n) => Ok(*n),
        other => Err(misuse(call, format!("expected a number, got {}", super::args::describe(other)))),
    }
}

pub fn create_table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("tensor", function(lua, "tensor.tensor", |lua, (data, opts): (Value, Option<Table>)| {
        let call = "tensor.tensor";
        let p = placement(lua, call, opts)?;
        let base = tensor_from_value(call, &data)?;
        let kind = p.kind.unwrap_or(base.kind());
        let out = base.f_to_dtype_layout((kind, p.device.unwrap_or(Device::Cpu)), false, false);
        finish(lua, call, out, &p)
    })?)?;
    sized(lua, &t, "zeros", |s, o| Tensor::f_zeros(s, o))?;
    sized(lua, &t, "ones", |s, o| Tensor::f_ones(s, o))?;
    sized(lua, &t, "randn", |s, o| Tensor::f_randn(s, o))?;
    sized(lua, &t, "rand", |s, o| Tensor::f_rand(s, o))?;
    sized(lua, &t, "empty", |s, o| Tensor::f_empty(s, o))?;
    like(lua, &t, "zeros_like", |s, o| Tensor::f_zeros(s.size(), o))?;
    like(lua, &t, "ones_like", |s, o| Tensor::f_ones(s.size(), o))?;
    like(lua, &t, "randn_like", |s, o| Tensor::f_randn(s.size(), o))?;
    like(lua, &t, "rand_like", |s, o| Tensor::f_rand(s.size(), o))?;
    t.set("full", function(lua, "tensor.full", |lua, args: MultiValue| {
        let call = "tensor.full";
        let mut args: Vec<Value> = args.into_iter().collect();
        let opts = if args.len() > 2 { trailing_options(&mut args) } else { None };
        if args.len() != 2 {
            return Err(misuse(call, "expected (size, value, options?)"));
        }
        let (size, _) = int_list(call, MultiValue::from_iter([args[0].clone()]))?;
        let p = placement(lua, call, opts)?;
        let device = p.device.unwrap_or(Device::Cpu);
        let value = operand(call, &args[1])?;
        let kind = match value {
            Operand::Int(_) => p.kind.unwrap_or(Kind::Int64),
            Operand::Float(_) => p.kind.unwrap_or(Kind::Float),
            Operand::Tensor(_) => return Err(misuse(call, "the fill value must be a number")),
        };
        finish(lua, call, filled(&size, kind, device, &value), &p)
    })?)?;
    t.set("full_like", function(lua, "tensor.full_like", |lua, (source, value, opts): (Value, Value, Option<Table>)| {
        let call = "tensor.full_like";
        let source = tensor_arg(call, &source)?;
        let p = placement(lua, call, opts)?;
        let o = (p.kind.unwrap_or(source.kind()), p.device.unwrap_or(source.device()));
        let value = Operand::Float(number(call, &value)?);
        finish(lua, call, filled(&source.size(), o.0, o.1, &value), &p)
    })?)?;
    t.set("randint", function(lua, "tensor.randint", |lua, args: MultiValue| {
        // randint(high, size, opts?) or randint(low, high, size, opts?), as torch.randint.
        let call = "tensor.randint";
        let mut args: Vec<Value> = args.into_iter().collect();
        let bounds: Vec<i64> = args.iter().take_while(|v| matches!(v, Value::Integer(_) | Value::Number(_))).map(|v| integer(call, v)).collect::<mlua::Result<_>>()?;
        let (low, high) = match bounds.as_slice() {
            [high] => (0, *high),
            [low, high] => (*low, *high),
            _ => return Err(misuse(call, "expected (high, size, options?) or (low, high, size, options?)")),
        };
        args.drain(..bounds.len());
        if low >= high {
            return Err(misuse(call, format!("low ({low}) must be below high ({high})")));
        }
        if args.is_empty() {
            return Err(misuse(call, "missing the size"));
        }
        let (size, opts, rest) = sizes_and_options(lua, call, MultiValue::from_iter(args))?;
        let p = placement(lua, call, opts)?;
        no_more(call, &rest)?;
        let o = (p.kind.unwrap_or(Kind::Int64), p.device.unwrap_or(Device::Cpu));
        headroom::check_tensor(&size, o, call).or_misuse(call)?;
        finish(lua, call, Tensor::f_randint_low(low, high, size.as_slice(), o), &p)
    })?)?;
    t.set("arange", function(lua, "tensor.arange", |lua, args: MultiValue| {
        // arange(end), arange(start, end), arange(start, end, step), each with options.
        let call = "tensor.arange";
        let mut args: Vec<Value> = args.into_iter().collect();
        let p = placement(lua, call, trailing_options(&mut args))?;
        let all_int = args.iter().all(|v| matches!(v, Value::Integer(_)));
        let nums: Vec<f64> = args.iter().map(|v| number(call, v)).collect::<mlua::Result<_>>()?;
        let (start, end, step) = match nums.as_slice() {
            [end] => (0.0, *end, 1.0),
            [start, end] => (*start, *end, 1.0),
            [start, end, step] => (*start, *end, *step),
            _ => return Err(misuse(call, "expected (end), (start, end) or (start, end, step)")),
        };
        check_range(start, end, step).map_err(|e| misuse(call, e))?;
        let kind = p.kind.unwrap_or(if all_int { Kind::Int64 } else { Kind::Float });
        let o = (kind, p.device.unwrap_or(Device::Cpu));
        let out = guard::catch(|| {
            Ok(if all_int {
                Tensor::f_arange_start_step(start as i64, end as i64, step as i64, o)?
            } else {
                Tensor::f_arange_start_step(start, end, step, o)?
            })
        });
        finish(lua, call, out, &p)
    })?)?;
    t.set("eye", function(lua, "tensor.eye", |lua, args: MultiValue| {
        let call = "tensor.eye";
        let (dims, opts, rest) = sizes_and_options(lua, call, args)?;
        let p = placement(lua, call, opts)?;
        no_more(call, &rest)?;
        let o = (p.kind.unwrap_or(Kind::Float), p.device.unwrap_or(Device::Cpu));
        let out = match dims.as_slice() {
            [n] => Tensor::f_eye(*n, o),
            [n, m] => Tensor::f_eye_m(*n, *m, o),
            _ => return Err(misuse(call, "expected (n) or (n, m)")),
        };
        finish(lua, call, out, &p)
    })?)?;
    // linspace(start, end, steps, opts?) and logspace(start, end, steps, { base = 10, ... }).
    for name in ["linspace", "logspace"] {
        t.set(name, function(lua, format!("tensor.{name}"), move |lua, (start, end, steps, opts): (Value, Value, i64, Option<Table>)| {
            let call = format!("tensor.{name}");
            let (settings, values) = super::args::split_values(lua, opts, &["base"])?;
            let p = placement(lua, &call, settings)?;
            let (start, end) = (number(&call, &start)?, number(&call, &end)?);
            let base = match &values[0] {
                Value::Nil => 10.0,
                v => number(&call, v)?,
            };
            if steps < 0 || !start.is_finite() || !end.is_finite() || !base.is_finite() {
                return Err(misuse(&call, format!("needs finite start, end{} and steps ≥ 0, got {start}, {end}, {steps}", if name == "logspace" { ", base" } else { "" })));
            }
            let o = (p.kind.unwrap_or(Kind::Float), p.device.unwrap_or(Device::Cpu));
            let out = guard::catch(|| Ok(if name == "linspace" { Tensor::f_linspace(start, end, steps, o)? } else { Tensor::f_logspace(start, end, steps, base, o)? }));
            finish(lua, &call, out, &p)
        })?)?;
    }
    // einsum("ij,jk->ik", a, b) or einsum("ij,jk->ik", { a, b }).
    t.set("einsum", function(lua, "tensor.einsum", |lua, (equation, rest): (String, MultiValue)| {
        let call = "tensor.einsum";
        let tensors = match rest.front() {
            Some(Value::Table(list)) if rest.len() == 1 => tensor_list(call, list)?,
            _ => rest.iter().map(|v| tensor_arg(call, v)).collect::<mlua::Result<Vec<_>>>()?,
        };
        wrap(lua, Tensor::f_einsum(&equation, &tensors, None::<&[i64]>).or_misuse(call)?)
    })?)?;
    t.set("cat", function(lua, "tensor.cat", |lua, (list, dim): (Table, Option<i64>)| {
        let tensors = tensor_list("tensor.cat", &list)?;
        wrap(lua, Tensor::f_cat(&tensors, dim.unwrap_or(0)).or_misuse("tensor.cat")?)
    })?)?;
    t.set("stack", function(lua, "tensor.stack", |lua, (list, dim): (Table, Option<i64>)| {
        let tensors = tensor_list("tensor.stack", &list)?;
        wrap(lua, Tensor::f_stack(&tensors, dim.unwrap_or(0)).or_misuse("tensor.stack")?)
    })?)?;
    t.set("where", function(lua, "tensor.where", |lua, (cond, a, b): (Value, Value, Value)| {
        let call = "tensor.where";
        let cond = tensor_arg(call, &cond)?;
        let a = operand(call, &a)?;
        let b = operand(call, &b)?;
        let ta = a.to_tensor().or_misuse(call)?;
        let tb = b.to_tensor().or_misuse(call)?;
        wrap(lua, ta.f_where_self(&cond, &tb).or_misuse(call)?)
    })?)?;
    t.set("is_tensor", function(lua, "tensor.is_tensor", |_, v: Value| Ok(matches!(&v, Value::UserData(ud) if ud.is::<LuaTensor>())))?)?;
    Ok(t)
}

/// `mt.no_grad(fn, ...)`: calls `fn` with gradient tracking off and returns its results.
pub fn no_grad(lua: &Lua) -> mlua::Result<Function> {
    function(lua, "no_grad", |_, (f, args): (Function, MultiValue)| {
        let _guard = tch::no_grad_guard();
        f.call::<MultiValue>(args)
    })
}

/// `mt.enable_grad(fn, ...)`: calls `fn` with gradient tracking on (inside `no_grad` too).
pub fn enable_grad(lua: &Lua) -> mlua::Result<Function> {
    function(lua, "enable_grad", |_, (f, args): (Function, MultiValue)| tch::with_grad(|| f.call::<MultiValue>(args)))
}

/// `mt.autocast(dtype, fn, ...)`: calls `fn` with autocast on (`torch.autocast` on CPU and CUDA):
/// matrix products and the other ops autocast lists run in `dtype` ("bf16" or "f16").
pub fn autocast(lua: &Lua) -> mlua::Result<Function> {
    function(lua, "autocast", |_, (dtype, f, args): (String, Function, MultiValue)| {
        let kind = crate::tensor::parse_dtype(&dtype).or_misuse("autocast")?;
        let _guard = crate::tensor::shim::Autocast::enter(kind).or_misuse("autocast")?;
        f.call::<MultiValue>(args)
    })
}

/// `mt.inference_mode(fn, ...)`: calls `fn` in libtorch's inference mode (faster than
/// `no_grad`; the tensors it makes can never take part in autograd).
pub fn inference_mode(lua: &Lua) -> mlua::Result<Function> {
    function(lua, "inference_mode", |_, (f, args): (Function, MultiValue)| {
        let _guard = crate::tensor::shim::InferenceMode::new();
        f.call::<MultiValue>(args)
    })
}
