//! Adapter methods defined outside the built-ins — in a Lua file (`mt.peft.register`) — and
//! used like them: targets and `modules_to_save` read as every method's, the rest of the options
//! handed to the method; saved with `peft_type` = its name and its parameters under the layer's
//! name, loaded back by that name.

use std::rc::Rc;

use anyhow::Result;
use serde_json::{json, Map, Value};
use tch::Kind;

use super::config::{selection_of, Fields, Source, INFORMATIONAL};
use super::targets::Selection;
use crate::nn::attach::LinearAdapter;
use crate::nn::linear::Linear;

/// What builds a custom method's layers.
pub trait CustomMethod {
    /// The method's name, its `peft_type`.
    fn name(&self) -> &str;
    /// A new layer of adapter `owner` for `base`, from the method's own `options`, with its
    /// parameters in `kind`.
    fn build(&self, owner: &str, base: &Linear, options: &Map<String, Value>, kind: Kind) -> Result<Box<dyn LinearAdapter>>;
}

#[derive(Clone)]
pub struct CustomConfig {
    pub method: Rc<dyn CustomMethod>,
    pub selection: Selection,
    /// Every option but the shared selection ones, as given.
    pub options: Map<String, Value>,
}

impl std::fmt::Debug for CustomConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CustomConfig({}, {:?}, {:?})", self.method.name(), self.selection, self.options)
    }
}

/// The selection keys of each source; the rest are the method's.
const OPTION_KEYS: [&str; 4] = ["targets", "exclude", "layers_to_transform", "modules_to_save"];
const PEFT_KEYS: [&str; 5] = ["target_modules", "exclude_modules", "layers_to_transform", "layers_pattern", "modules_to_save"];

impl CustomConfig {
    pub fn parse(method: Rc<dyn CustomMethod>, map: Map<String, Value>, source: Source) -> Result<CustomConfig> {
        let keys: &[&str] = if source == Source::Options { &OPTION_KEYS } else { &PEFT_KEYS };
        let mut options = Map::new();
        let mut shared = Map::new();
        for (k, v) in map {
            if keys.contains(&k.as_str()) {
                shared.insert(k, v);
            } else if source == Source::Options || !INFORMATIONAL.contains(&k.as_str()) {
                options.insert(k, v);
            }
        }
        let what = format!("{} options", method.name());
        let mut f = Fields::new(shared, &what);
        let selection = selection_of(&mut f, source, Vec::new())?;
        f.finish(&[])?;
        Ok(CustomConfig { method, selection, options })
    }

    /// adapter_config.json: the method's options, its targets, `peft_type` its name.
    pub fn to_peft(&self, resolved: &[String], task_type: &str) -> Map<String, Value> {
        let mut m = super::config::selection_json(&self.selection, resolved);
        m.extend(self.options.clone());
        m.insert("peft_type".into(), json!(self.method.name()));
        m.insert("task_type".into(), json!(task_type));
        m.insert("inference_mode".into(), json!(true));
        m
    }
}
