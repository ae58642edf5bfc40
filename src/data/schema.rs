//! The fields a source's examples must have and their types (`read(path, { schema = { text =
//! "string", label = "int" } })`): a missing field or a value of another type is an error naming
//! the field, the record and both types, at the record where it happens.

use anyhow::{bail, Result};

use super::value::Value;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FieldType {
    String,
    Int,
    /// An int is accepted too.
    Float,
    Bool,
    List,
    Record,
    /// Present, any type.
    Any,
}

pub const TYPE_NAMES: [&str; 7] = ["string", "int", "float", "bool", "list", "record", "any"];

impl FieldType {
    pub fn named(name: &str) -> Result<FieldType> {
        Ok(match name {
            "string" => FieldType::String,
            "int" => FieldType::Int,
            "float" => FieldType::Float,
            "bool" => FieldType::Bool,
            "list" => FieldType::List,
            "record" => FieldType::Record,
            "any" => FieldType::Any,
            other => bail!("unknown field type \"{other}\" (known: {})", TYPE_NAMES.join(", ")),
        })
    }

    fn admits(self, v: &Value) -> bool {
        matches!(
            (self, v),
            (FieldType::Any, _)
                | (FieldType::String, Value::Str(_))
                | (FieldType::Int, Value::Int(_))
                | (FieldType::Float, Value::Float(_) | Value::Int(_))
                | (FieldType::Bool, Value::Bool(_))
                | (FieldType::List, Value::List(_))
                | (FieldType::Record, Value::Record(_))
        )
    }

    fn name(self) -> &'static str {
        TYPE_NAMES[self as usize]
    }
}

#[derive(Clone, Debug)]
pub struct Schema(pub Vec<(String, FieldType)>);

impl Schema {
    pub fn check(&self, v: &Value) -> Result<()> {
        let Value::Record(r) = v else { bail!("the example is a {}, the schema wants a record", v.type_name()) };
        for (name, ty) in &self.0 {
            match r.get(name) {
                None => bail!("the field '{name}' is missing (the schema wants a {}; the example has: {})", ty.name(), r.keys().collect::<Vec<_>>().join(", ")),
                Some(value) if !ty.admits(value) => bail!("the field '{name}' is a {}, the schema wants a {}", value.type_name(), ty.name()),
                Some(_) => {}
            }
        }
        Ok(())
    }
}
