//! Which layers an adapter goes on: PEFT's `target_modules` (a list of names matched by suffix,
//! a Python regular expression from an adapter_config.json, or `"all-linear"`) or a Lua
//! pattern given in a recipe, narrowed by `layers_to_transform` and `exclude_modules`, with
//! `modules_to_save` never targeted (as PEFT's `check_target_module_exists`).

use anyhow::{bail, Result};
use regex::Regex;

use crate::nn::linear::Linear;
use crate::nn::module::{named_modules, Module};
use crate::nn::names::NameMatcher;

/// How target modules are named.
#[derive(Clone, Debug)]
pub enum Targets {
    /// Names matched whole or as a suffix at a dot (`"q_proj"`).
    Names(Vec<String>),
    /// A Lua pattern over the whole name (recipes).
    LuaPattern(String),
    /// A Python regular expression over the whole name (PEFT's adapter_config.json).
    Regex(String),
    /// Every linear layer but the output head.
    AllLinear,
}

impl Targets {
    pub fn matches(&self, name: &str) -> Result<bool> {
        Ok(match self {
            Targets::Names(list) => NameMatcher::Suffixes(list.clone()).matches(name)?,
            Targets::LuaPattern(p) => NameMatcher::pattern(p)?.matches(name)?,
            Targets::Regex(r) => full_regex(r)?.is_match(name),
            Targets::AllLinear => true,
        })
    }

    /// As adapter_config.json writes it.
    pub fn to_json(&self, resolved: &[String]) -> serde_json::Value {
        match self {
            Targets::Names(list) => serde_json::json!(list),
            Targets::Regex(r) => serde_json::json!(r),
            // A Lua pattern and "all-linear" are written as the layers they picked.
            Targets::LuaPattern(_) | Targets::AllLinear => serde_json::json!(resolved),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Targets::Names(list) => format!("targets {{{}}}", list.join(", ")),
            Targets::LuaPattern(p) => format!("target pattern '{p}'"),
            Targets::Regex(r) => format!("target_modules regex '{r}'"),
            Targets::AllLinear => "all-linear".into(),
        }
    }
}

/// A Python-style `re.fullmatch` pattern.
pub fn full_regex(pattern: &str) -> Result<Regex> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| anyhow::anyhow!("'{pattern}' is not a regular expression this reader understands: {e}"))
}

/// What decides the layers an adapter attaches to.
#[derive(Clone, Debug)]
pub struct Selection {
    pub targets: Targets,
    pub exclude: Option<Targets>,
    pub layers_to_transform: Option<Vec<i64>>,
    /// The name of the layer list whose numbers `layers_to_transform` counts (PEFT's
    /// `layers_pattern`); empty: the first numbered part of a name.
    pub layers_pattern: Vec<String>,
    pub modules_to_save: Vec<String>,
    /// `modules_to_save` names the model may lack (PEFT's files list both `classifier` and
    /// `score` for any classifier); names given in a recipe must all exist.
    pub saved_optional: bool,
}

/// The layer index of a module name as PEFT reads it: the first all-digit part after at least
/// two parts (`model.layers.3.…` → 3, `transformer.h.0.…` → 0), or with `patterns` the part
/// after one that a pattern matches whole (PEFT's `layers_pattern`).
pub fn layer_index(name: &str, patterns: &[String]) -> Result<Option<i64>> {
    let parts: Vec<&str> = name.split('.').collect();
    let numeric = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if patterns.is_empty() {
        return Ok(parts.iter().enumerate().skip(2).take_while(|(i, _)| *i + 1 < parts.len()).find(|(_, p)| numeric(p)).and_then(|(_, p)| p.parse().ok()));
    }
    for pattern in patterns {
        let re = full_regex(pattern)?;
        for i in 0..parts.len().saturating_sub(2) {
            if re.is_match(parts[i]) && numeric(parts[i + 1]) {
                return Ok(parts[i + 1].parse().ok());
            }
        }
    }
    Ok(None)
}

/// Whether `name` is one of `modules_to_save` (or lies under one).
pub fn under_modules_to_save(modules_to_save: &[String], name: &str) -> bool {
    modules_to_save.iter().any(|m| name == m || name.ends_with(&format!(".{m}")) || name.starts_with(&format!("{m}.")) || name.contains(&format!(".{m}.")))
}

impl Selection {
    fn picks(&self, name: &str) -> Result<bool> {
        if name.is_empty() || under_modules_to_save(&self.modules_to_save, name) {
            return Ok(false);
        }
        if let Some(exclude) = &self.exclude {
            if exclude.matches(name)? {
                return Ok(false);
            }
        }
        if !self.targets.matches(name)? {
            return Ok(false);
        }
        Ok(match &self.layers_to_transform {
            Some(layers) => layer_index(name, &self.layers_pattern)?.is_some_and(|i| layers.contains(&i)),
            None => true,
        })
    }

    /// The linear layers picked under `root`, in tree order. Picking nothing, or a module
    /// that is not a linear layer, is an error that lists what there is.
    pub fn linear_layers(&self, root: &dyn Module, output_head: &str) -> Result<Vec<String>> {
        let mut picked = Vec::new();
        let mut linear_names = Vec::new();
        // The first module picked that is not a linear layer: an error once every linear layer is listed.
        let mut not_linear: Option<(String, &'static str)> = None;
        for (name, m) in named_modules(root) {
            if name.contains(".adapters.") || name.ends_with(".adapters") {
                continue;
            }
            let is_linear = m.as_any().downcast_ref::<Linear>().is_some();
            if is_linear {
                linear_names.push(name.clone());
            }
            if matches!(self.targets, Targets::AllLinear) && (!is_linear || name == output_head) {
                continue;
            }
            if self.picks(&name)? {
                if !is_linear {
                    not_linear.get_or_insert((name, m.class_name()));
                    continue;
                }
                picked.push(name);
            }
        }
        if let Some((name, class)) = not_linear {
            bail!("{} picks '{name}' ({class}), which is not a linear layer; the linear layers are: {}", self.targets.describe(), summarize(&linear_names));
        }
        if picked.is_empty() {
            bail!("{} matched no linear layer; the model's linear layers are: {}", self.targets.describe(), summarize(&linear_names));
        }
        Ok(picked)
    }
}

/// A long list of names shortened for a message: the distinct last parts, then a few full names.
fn summarize(names: &[String]) -> String {
    let kinds: Vec<&str> = names.iter().map(|n| n.rsplit('.').next().unwrap_or(n)).collect();
    let mut unique = Vec::new();
    for k in kinds {
        if !unique.contains(&k) {
            unique.push(k);
        }
    }
    let examples: Vec<&str> = names.iter().take(4).map(|s| s.as_str()).collect();
    format!("{} (e.g. {})", unique.join(", "), examples.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_index_reads_the_first_numbered_part_as_peft() {
        let none: &[String] = &[];
        assert_eq!(layer_index("model.layers.3.self_attn.q_proj", none).unwrap(), Some(3));
        assert_eq!(layer_index("transformer.h.0.attn.c_attn", none).unwrap(), Some(0));
        assert_eq!(layer_index("encoder.layer.11.attention.self.query", none).unwrap(), Some(11));
        assert_eq!(layer_index("lm_head", none).unwrap(), None);
        assert_eq!(layer_index("0.q", none).unwrap(), None);
        let layers = ["layers".to_string()];
        assert_eq!(layer_index("model.layers.3.experts.1.w", &layers).unwrap(), Some(3));
        assert_eq!(layer_index("model.blocks.3.q", &layers).unwrap(), None);
    }

    #[test]
    fn regex_targets_match_the_whole_name() {
        let t = Targets::Regex(r".*\.(q|v)_proj".into());
        assert!(t.matches("model.layers.0.self_attn.q_proj").unwrap());
        assert!(!t.matches("model.layers.0.self_attn.q_proj_extra").unwrap());
        assert!(Targets::Regex("(".into()).matches("x").is_err());
    }
}
