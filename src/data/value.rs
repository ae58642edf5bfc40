//! One example as a dataset carries it: JSON-like values whose records keep their fields in file
//! order, plus tensors (what a batch holds). Converts from and to `serde_json` for the readers,
//! `moontune data inspect` and iterator states.

use anyhow::{bail, Result};
use tch::Tensor;

pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    Record(Record),
    Tensor(Tensor),
}

/// Named fields in order; field names are unique.
#[derive(Clone, Default)]
pub struct Record(pub Vec<(String, Value)>);

impl Clone for Value {
    fn clone(&self) -> Value {
        match self {
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(*b),
            Value::Int(i) => Value::Int(*i),
            Value::Float(x) => Value::Float(*x),
            Value::Str(s) => Value::Str(s.clone()),
            Value::List(l) => Value::List(l.clone()),
            Value::Record(r) => Value::Record(r.clone()),
            Value::Tensor(t) => Value::Tensor(t.shallow_clone()),
        }
    }
}

impl Record {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Sets `key`, replacing its value where it exists (keeping its place), else appending.
    pub fn insert(&mut self, key: &str, value: Value) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key.to_string(), value)),
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }
}

impl Value {
    /// The type's name as errors and `data inspect` show it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Record(_) => "record",
            Value::Tensor(_) => "tensor",
        }
    }

    pub fn as_record(&self) -> Option<&Record> {
        match self {
            Value::Record(r) => Some(r),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The field `key` of a record example; `index` (0-based) names the example in the error.
    pub fn field(&self, key: &str, index: u64) -> Result<&Value> {
        let Value::Record(r) = self else { bail!("example {} is a {}, not a record with the field '{key}'", index + 1, self.type_name()) };
        match r.get(key) {
            Some(v) => Ok(v),
            None => bail!("example {} has no field '{key}' (its fields: {})", index + 1, r.keys().collect::<Vec<_>>().join(", ")),
        }
    }

    /// The string field `key`, naming the example and the field in errors.
    pub fn text_field(&self, key: &str, index: u64) -> Result<&str> {
        match self.field(key, index)? {
            Value::Str(s) => Ok(s),
            other => bail!("example {}: the field '{key}' is a {}, expected a string", index + 1, other.type_name()),
        }
    }

    pub fn from_json(v: serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::Str(s),
            serde_json::Value::Array(a) => Value::List(a.into_iter().map(Value::from_json).collect()),
            serde_json::Value::Object(o) => Value::Record(Record(o.into_iter().map(|(k, v)| (k, Value::from_json(v))).collect())),
        }
    }

    /// JSON for the value; a tensor becomes its nested list of numbers.
    pub fn to_json(&self) -> Result<serde_json::Value> {
        Ok(match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Int(i) => (*i).into(),
            Value::Float(x) => serde_json::Number::from_f64(*x).map(serde_json::Value::Number).unwrap_or(serde_json::Value::Null),
            Value::Str(s) => s.clone().into(),
            Value::List(l) => serde_json::Value::Array(l.iter().map(Value::to_json).collect::<Result<_>>()?),
            Value::Record(r) => serde_json::Value::Object(r.0.iter().map(|(k, v)| Ok((k.clone(), v.to_json()?))).collect::<Result<_>>()?),
            Value::Tensor(t) => {
                let flat = t.f_to_kind(tch::Kind::Double)?.f_flatten(0, -1)?;
                let numbers: Vec<f64> = Vec::<f64>::try_from(&flat)?;
                serde_json::to_value(numbers)?
            }
        })
    }

    /// Integer token ids, if the value is a list of integers.
    pub fn as_ids(&self) -> Option<Vec<i64>> {
        match self {
            Value::List(l) => l.iter().map(|v| if let Value::Int(i) = v { Some(*i) } else { None }).collect(),
            _ => None,
        }
    }

    pub fn ids(ids: impl IntoIterator<Item = i64>) -> Value {
        Value::List(ids.into_iter().map(Value::Int).collect())
    }
}
