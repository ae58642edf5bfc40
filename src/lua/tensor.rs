//! `Tensor` userdata: a libtorch tensor seen from Lua, with PyTorch semantics (0-based dims,
//! negative from the end), arithmetic metamethods, `t[i]` row access, `#t`, PyTorch printing and
//! autograd (`requires_grad_`, `backward`, `.grad`). The methods themselves are registered by
//! `tensor_methods.rs`; this file holds the type, its conversions and its metamethods.

use mlua::{AnyUserData, Lua, MetaMethod, UserData, UserDataFields, UserDataMethods, Value};
use tch::{Kind, Tensor};

use super::args::{describe, misuse, OrMisuse};
use super::memory;
use crate::tensor::{dtype::is_floating, format_tensor};

/// A tensor owned by Lua. The bytes it holds are counted so that memory stays bounded.
/// `t:free()` releases the tensor early; using it afterwards is an error naming the call.
pub struct LuaTensor {
    t: Option<Tensor>,
    bytes: i64,
}

impl LuaTensor {
    fn new(t: Tensor) -> LuaTensor {
        let bytes = if t.defined() {
            t.numel() as i64 * t.f_kind().map(|k| k.elt_size_in_bytes() as i64).unwrap_or(0)
        } else {
            0
        };
        memory::track(bytes);
        LuaTensor { t: Some(t), bytes }
    }

    /// The tensor, or an error naming `call` if it was freed.
    pub fn get(&self, call: &str) -> mlua::Result<&Tensor> {
        self.t.as_ref().ok_or_else(|| misuse(call, "the tensor was freed (by t:free())"))
    }

    /// Releases the tensor now rather than when Lua collects the userdata.
    fn free(&mut self) {
        self.t = None;
        memory::release(std::mem::take(&mut self.bytes));
    }
}

impl Drop for LuaTensor {
    fn drop(&mut self) {
        memory::release(self.bytes);
    }
}

/// Hands a tensor to Lua, first collecting garbage if tensor memory has grown a lot.
pub fn wrap(lua: &Lua, t: Tensor) -> mlua::Result<LuaTensor> {
    memory::collect_if_grown(lua)?;
    Ok(LuaTensor::new(t))
}

/// Wraps the result of a fallible libtorch call, naming `call` in the error.
pub fn wrap_result<E: std::fmt::Display>(
    lua: &Lua,
    call: &str,
    r: Result<Tensor, E>,
) -> mlua::Result<LuaTensor> {
    wrap(lua, r.or_misuse(call)?)
}

/// The tensor in a Lua value, or an error naming the call and what was given instead.
pub fn tensor_arg(call: &str, v: &Value) -> mlua::Result<Tensor> {
    match v {
        Value::UserData(ud) => match ud.borrow::<LuaTensor>() {
            Ok(t) => Ok(t.get(call)?.shallow_clone()),
            Err(_) => Err(misuse(call, format!("expected a tensor, got {}", describe(v)))),
        },
        other => Err(misuse(call, format!("expected a tensor, got {}", describe(other)))),
    }
}

/// The tensor in a Lua value, or None for nil.
pub fn optional_tensor_arg(call: &str, v: &Value) -> mlua::Result<Option<Tensor>> {
    match v {
        Value::Nil => Ok(None),
        other => Ok(Some(tensor_arg(call, other)?)),
    }
}

/// One side of a binary operation: a tensor or a Lua number.
pub enum Operand {
    Tensor(Tensor),
    Int(i64),
    Float(f64),
}

impl Operand {
    pub fn from_value(call: &str, v: &Value) -> mlua::Result<Operand> {
        match v {
            Value::Integer(i) => Ok(Operand::Int(*i)),
            Value::Number(n) => Ok(Operand::Float(*n)),
            Value::Boolean(b) => Ok(Operand::Int(*b as i64)),
            _ => Ok(Operand::Tensor(tensor_arg(call, v)?)),
        }
    }

    /// The operand as a tensor beside `like`: a number becomes a 0-dim tensor that promotes like
    /// a Python scalar (a float number beside an integer tensor gives float32).
    pub fn to_tensor(&self, like: &Tensor) -> Result<Tensor, tch::TchError> {
        let kind = like.f_kind()?;
        match self {
            Operand::Tensor(t) => Ok(t.shallow_clone()),
            Operand::Int(i) => Tensor::f_scalar_tensor(*i, (kind_for_int(kind), like.device())),
            Operand::Float(f) => {
                let k = if is_floating(kind) { kind } else { Kind::Float };
                Tensor::f_scalar_tensor(*f, (k, like.device()))
            }
        }
    }

}

fn kind_for_int(kind: Kind) -> Kind {
    if kind == Kind::Bool {
        Kind::Int64
    } else {
        kind
    }
}

/// The arithmetic operators, as libtorch's tensor-tensor ops.
#[derive(Clone, Copy)]
pub enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
}

impl Arith {
    pub fn name(self) -> &'static str {
        match self {
            Arith::Add => "add",
            Arith::Sub => "sub",
            Arith::Mul => "mul",
            Arith::Div => "div",
            Arith::Pow => "pow",
        }
    }

    /// `a op b` with broadcasting and type promotion; one side may be a number.
    pub fn apply(self, a: &Operand, b: &Operand) -> Result<Tensor, tch::TchError> {
        let (ta, tb) = match (a, b) {
            (Operand::Tensor(x), other) => (x.shallow_clone(), other.to_tensor(x)?),
            (other, Operand::Tensor(y)) => (other.to_tensor(y)?, y.shallow_clone()),
            (other, _) => {
                let reference = Tensor::f_zeros([0], (Kind::Float, tch::Device::Cpu))?;
                (other.to_tensor(&reference)?, b.to_tensor(&reference)?)
            }
        };
        match self {
            Arith::Add => ta.f_add(&tb),
            Arith::Sub => ta.f_sub(&tb),
            Arith::Mul => ta.f_mul(&tb),
            Arith::Div => ta.f_div(&tb),
            Arith::Pow => ta.f_pow(&tb),
        }
    }
}

fn add_arith_meta<M: UserDataMethods<LuaTensor>>(methods: &mut M, meta: MetaMethod, op: Arith) {
    methods.add_meta_function(meta, move |lua, (a, b): (Value, Value)| {
        let call = format!("tensor.{}", op.name());
        let a = Operand::from_value(&call, &a)?;
        let b = Operand::from_value(&call, &b)?;
        wrap_result(lua, &call, op.apply(&a, &b))
    });
}

impl UserData for LuaTensor {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("grad", |lua, this| {
            let grad = this.get("tensor.grad")?.f_grad().or_misuse("tensor.grad")?;
            if grad.defined() {
                Ok(Some(wrap(lua, grad)?))
            } else {
                Ok(None)
            }
        });
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        add_arith_meta(methods, MetaMethod::Add, Arith::Add);
        add_arith_meta(methods, MetaMethod::Sub, Arith::Sub);
        add_arith_meta(methods, MetaMethod::Mul, Arith::Mul);
        add_arith_meta(methods, MetaMethod::Div, Arith::Div);
        add_arith_meta(methods, MetaMethod::Pow, Arith::Pow);
        methods.add_meta_method(MetaMethod::Unm, |lua, this, ()| {
            wrap_result(lua, "tensor.neg", this.get("tensor.neg")?.f_neg())
        });
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| {
            match &this.t {
                Some(t) => format_tensor(t).or_misuse("tensor.__tostring"),
                None => Ok("tensor(<freed>)".to_string()),
            }
        });
        methods.add_meta_method(MetaMethod::Len, |_, this, ()| match this.get("tensor.__len")?.size().first() {
            Some(n) => Ok(*n),
            None => Err(misuse("tensor.__len", "a 0-dim tensor has no length")),
        });
        methods.add_meta_method(MetaMethod::Index, |lua, this, key: Value| match key {
            Value::Integer(_) | Value::Number(_) => {
                let i = super::args::integer("tensor.__index", &key)?;
                wrap_result(lua, "tensor.__index", this.get("tensor.__index")?.f_select(0, i))
            }
            other => Err(misuse("tensor.__index", format!("no field or method {}", describe(&other)))),
        });
        methods.add_meta_method(MetaMethod::NewIndex, |_, this, (key, value): (Value, Value)| {
            let call = "tensor.__newindex";
            let i = super::args::integer(call, &key)
                .map_err(|_| misuse(call, format!("cannot assign to {}", describe(&key))))?;
            let mut row = this.get(call)?.f_select(0, i).or_misuse(call)?;
            match Operand::from_value(call, &value)? {
                Operand::Tensor(src) => row.f_copy_(&src).or_misuse(call),
                number => number.to_tensor(&row).and_then(|v| row.f_fill_tensor_(&v)).map(drop).or_misuse(call),
            }
        });
        methods.add_method_mut("free", |_, this, ()| {
            this.free();
            Ok(())
        });
        super::tensor_methods::register(methods);
    }
}

/// Returns the userdata itself (for in-place methods), after running `f` on its tensor.
pub fn in_place<E: std::fmt::Display>(
    call: &str,
    ud: &AnyUserData,
    f: impl FnOnce(&mut Tensor) -> Result<Tensor, E>,
) -> mlua::Result<AnyUserData> {
    let mut t = ud.borrow::<LuaTensor>().map_err(|e| misuse(call, e))?.get(call)?.shallow_clone();
    let _ = f(&mut t).or_misuse(call)?;
    Ok(ud.clone())
}
