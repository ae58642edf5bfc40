//! `Tensor` userdata: a libtorch tensor seen from Lua, the conversions between Lua values and
//! tensors that every binding uses, and the name a parameter handle carries (its name in the
//! module tree it was taken from, which optimizers key their state by). The methods and
//! metamethods are registered in `tensor_methods.rs`.

use std::rc::Rc;

use mlua::{AnyUserData, Lua, Value};
use tch::Tensor;

use super::args::{describe, misuse, OrMisuse};
use super::memory;
use crate::tensor::ledger::Entry;
use crate::tensor::scalar::Operand;

/// A tensor owned by Lua. Its storage is booked in the memory ledger so that memory stays
/// bounded. `t:free()` releases the tensor early; using it afterwards is an error naming the call.
pub struct LuaTensor {
    t: Option<Tensor>,
    entry: Entry,
    /// The parameter's name in the module tree it was taken from, if it is one.
    name: Option<Rc<str>>,
}

impl LuaTensor {
    fn new(t: Tensor, name: Option<Rc<str>>) -> LuaTensor {
        let entry = memory::track(&t);
        LuaTensor { t: Some(t), entry, name }
    }

    /// The tensor, or an error naming `call` if it was freed.
    pub fn get(&self, call: &str) -> mlua::Result<&Tensor> {
        self.t.as_ref().ok_or_else(|| misuse(call, "the tensor was freed (by t:free())"))
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Releases the tensor now rather than when Lua collects the userdata.
    pub fn free(&mut self) {
        self.t = None;
        memory::release(std::mem::take(&mut self.entry));
    }
}

impl Drop for LuaTensor {
    fn drop(&mut self) {
        memory::release(self.entry);
    }
}

/// Hands a tensor to Lua, first collecting garbage if tensor memory has grown a lot.
pub fn wrap(lua: &Lua, t: Tensor) -> mlua::Result<LuaTensor> {
    memory::collect_if_grown(lua)?;
    Ok(LuaTensor::new(t, None))
}

/// Hands a parameter to Lua as a handle that carries its tree name.
pub fn wrap_named(lua: &Lua, t: Tensor, name: &str) -> mlua::Result<LuaTensor> {
    memory::collect_if_grown(lua)?;
    Ok(LuaTensor::new(t, Some(Rc::from(name))))
}

/// Wraps the result of a fallible libtorch call, naming `call` in the error.
pub fn wrap_result<E: std::fmt::Display>(lua: &Lua, call: &str, r: Result<Tensor, E>) -> mlua::Result<LuaTensor> {
    wrap(lua, r.or_misuse(call)?)
}

/// The tensor in a Lua value, or an error naming the call and what was given instead.
pub fn tensor_arg(call: &str, v: &Value) -> mlua::Result<Tensor> {
    Ok(named_tensor_arg(call, v)?.0)
}

/// The tensor in a Lua value and the tree name its handle carries, if any.
pub fn named_tensor_arg(call: &str, v: &Value) -> mlua::Result<(Tensor, Option<String>)> {
    if let Value::UserData(ud) = v {
        if let Ok(t) = ud.borrow::<LuaTensor>() {
            return Ok((t.get(call)?.shallow_clone(), t.name().map(str::to_string)));
        }
    }
    Err(misuse(call, format!("expected a tensor, got {}", describe(v))))
}

/// The tensor in a Lua value, or None for nil.
pub fn optional_tensor_arg(call: &str, v: &Value) -> mlua::Result<Option<Tensor>> {
    match v {
        Value::Nil => Ok(None),
        other => Ok(Some(tensor_arg(call, other)?)),
    }
}

/// The tensor in a Lua value, if it holds one (no error otherwise).
pub fn as_tensor(v: &Value) -> Option<Tensor> {
    match v {
        Value::UserData(ud) => ud.borrow::<LuaTensor>().ok()?.t.as_ref().map(Tensor::shallow_clone),
        _ => None,
    }
}

/// A Lua number, boolean or tensor as one side of an operation.
pub fn operand(call: &str, v: &Value) -> mlua::Result<Operand> {
    match v {
        Value::Integer(i) => Ok(Operand::Int(*i)),
        Value::Number(n) => Ok(Operand::Float(*n)),
        Value::Boolean(b) => Ok(Operand::Int(*b as i64)),
        _ => Ok(Operand::Tensor(tensor_arg(call, v)?)),
    }
}

/// Returns the userdata itself (for in-place methods), after running `f` on its tensor.
pub fn in_place<T, E: std::fmt::Display>(call: &str, ud: &AnyUserData, f: impl FnOnce(&mut Tensor) -> Result<T, E>) -> mlua::Result<AnyUserData> {
    let mut t = ud.borrow::<LuaTensor>().map_err(|e| misuse(call, e))?.get(call)?.shallow_clone();
    let _ = f(&mut t).or_misuse(call)?;
    Ok(ud.clone())
}
