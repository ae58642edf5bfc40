//! Adapter configurations, read from a recipe's options table (moontune's names: `alpha`,
//! `targets`, …) or from PEFT's adapter_config.json (PEFT's names: `lora_alpha`,
//! `target_modules`, …) into one typed form, and written back in PEFT's form. A field that is
//! not understood is an error naming it — unless it holds PEFT's "off" value (null, false, an
//! empty list or table), as the many optional features of newer PEFT versions do by default.

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

use super::targets::{Selection, Targets};

/// Where a config comes from; it decides the field names and what a string target means.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A recipe's options: a string target is a Lua pattern.
    Options,
    /// adapter_config.json: a string target is a Python regular expression.
    Peft,
}

/// Reads fields from a JSON object, remembering which were read.
pub struct Fields {
    map: Map<String, Value>,
    read: Vec<String>,
    what: String,
}

impl Fields {
    pub fn new(map: Map<String, Value>, what: &str) -> Fields {
        Fields { map, read: Vec::new(), what: what.to_string() }
    }

    pub fn get(&mut self, key: &str) -> Option<Value> {
        self.read.push(key.to_string());
        self.map.get(key).filter(|v| !v.is_null()).cloned()
    }

    fn typed<T>(&mut self, key: &str, kind: &str, f: impl Fn(&Value) -> Option<T>) -> Result<Option<T>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => f(&v).map(Some).with_context(|| format!("{}: '{key}' must be {kind}, got {v}", self.what)),
        }
    }

    pub fn int(&mut self, key: &str) -> Result<Option<i64>> {
        self.typed(key, "an integer", |v| v.as_i64().or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)))
    }

    pub fn float(&mut self, key: &str) -> Result<Option<f64>> {
        self.typed(key, "a number", |v| v.as_f64())
    }

    pub fn bool(&mut self, key: &str) -> Result<Option<bool>> {
        self.typed(key, "true or false", |v| v.as_bool())
    }

    pub fn string(&mut self, key: &str) -> Result<Option<String>> {
        self.typed(key, "a string", |v| v.as_str().map(str::to_string))
    }

    /// A list of strings (a single string is a list of one where `single` allows it).
    pub fn strings(&mut self, key: &str) -> Result<Option<Vec<String>>> {
        self.typed(key, "a list of names", |v| match v {
            Value::Array(a) => a.iter().map(|x| x.as_str().map(str::to_string)).collect(),
            Value::Object(o) if o.is_empty() => Some(Vec::new()),
            _ => None,
        })
    }

    /// Names (a list) or a pattern (a string), as `target_modules`.
    pub fn targets(&mut self, key: &str, source: Source) -> Result<Option<Targets>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s == "all-linear" => Ok(Some(Targets::AllLinear)),
            Some(Value::String(s)) => Ok(Some(match source {
                Source::Options => Targets::LuaPattern(s),
                Source::Peft => Targets::Regex(s),
            })),
            Some(v) => {
                let list = match &v {
                    Value::Array(a) => a.iter().map(|x| x.as_str().map(str::to_string)).collect::<Option<Vec<_>>>(),
                    _ => None,
                };
                let list = list.with_context(|| format!("{}: '{key}' must be a list of module names or a pattern, got {v}", self.what))?;
                if list.is_empty() {
                    bail!("{}: '{key}' is an empty list: it would target nothing", self.what);
                }
                Ok(Some(Targets::Names(list)))
            }
        }
    }

    /// `{pattern = number}` as `rank_pattern`.
    pub fn pattern_map(&mut self, key: &str) -> Result<Vec<(String, f64)>> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Object(o)) => o.iter().map(|(k, v)| v.as_f64().map(|f| (k.clone(), f)).with_context(|| format!("{}: '{key}.{k}' must be a number, got {v}", self.what))).collect(),
            Some(Value::Array(a)) if a.is_empty() => Ok(Vec::new()),
            Some(v) => bail!("{}: '{key}' must be a table of module name = number, got {v}", self.what),
        }
    }

    /// Every field not read must hold PEFT's "off" value; `informational` ones may hold anything.
    pub fn finish(self, informational: &[&str]) -> Result<()> {
        let mut unknown: Vec<String> = self
            .map
            .iter()
            .filter(|(k, v)| !self.read.contains(k) && !informational.contains(&k.as_str()) && !is_off(v))
            .map(|(k, v)| format!("'{k}' = {v}"))
            .collect();
        unknown.sort();
        if !unknown.is_empty() {
            bail!("{}: not supported: {}", self.what, unknown.join(", "));
        }
        Ok(())
    }
}

fn is_off(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Fields PEFT writes that say where and how a file was made, not what the adapter computes.
pub const INFORMATIONAL: [&str; 8] = ["peft_type", "peft_version", "auto_mapping", "base_model_name_or_path", "revision", "inference_mode", "task_type", "megatron_core"];

/// How LoRA's A and B start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoraInit {
    /// Kaiming-uniform A, zero B (PEFT's `init_lora_weights=True`).
    Default,
    /// A ~ N(0, 1/r²), zero B.
    Gaussian,
    /// A and B from the SVD of the base weight, which keeps the residual (PiSSA).
    Pissa,
    /// A and B from a QR of the base weight, which keeps the residual (OLoRA).
    Olora,
    /// Both as `torch.nn.Linear`'s default (PEFT's `init_lora_weights=False`: the adapter
    /// changes the output from the start).
    Random,
}

impl LoraInit {
    fn parse(v: Option<Value>, source: Source) -> Result<LoraInit> {
        Ok(match v {
            None | Some(Value::Bool(true)) => LoraInit::Default,
            Some(Value::Bool(false)) => LoraInit::Random,
            Some(Value::String(s)) => match (s.as_str(), source) {
                ("default", Source::Options) => LoraInit::Default,
                ("random", Source::Options) => LoraInit::Random,
                ("gaussian", _) => LoraInit::Gaussian,
                ("pissa", _) => LoraInit::Pissa,
                ("olora", _) => LoraInit::Olora,
                (other, _) => bail!("init '{other}' is not supported (supported: \"default\", \"gaussian\", \"pissa\", \"olora\", false)"),
            },
            Some(other) => bail!("init must be a name or a boolean, got {other}"),
        })
    }

    fn to_json(self) -> Value {
        match self {
            LoraInit::Default => json!(true),
            LoraInit::Random => json!(false),
            LoraInit::Gaussian => json!("gaussian"),
            LoraInit::Pissa => json!("pissa"),
            LoraInit::Olora => json!("olora"),
        }
    }
}

/// Which biases of the base model train with an adapter (and are saved with it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BiasMode {
    None,
    /// The biases of the layers the adapter targets.
    LoraOnly,
    /// Every bias of the model.
    All,
}

impl BiasMode {
    fn parse(s: Option<String>) -> Result<BiasMode> {
        Ok(match s.as_deref() {
            None | Some("none") => BiasMode::None,
            Some("lora_only") => BiasMode::LoraOnly,
            Some("all") => BiasMode::All,
            Some(other) => bail!("bias '{other}' is not one of \"none\", \"lora_only\", \"all\""),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            BiasMode::None => "none",
            BiasMode::LoraOnly => "lora_only",
            BiasMode::All => "all",
        }
    }
}

/// Reads the selection fields shared by every method (a custom method's, with PEFT's or the
/// options' names).
pub fn selection_of(f: &mut Fields, source: Source, default_targets: Vec<String>) -> Result<Selection> {
    selection(f, source, names(source), default_targets)
}

/// Reads the selection fields shared by every method.
fn selection(f: &mut Fields, source: Source, names: &Names, default_targets: Vec<String>) -> Result<Selection> {
    let targets = f.targets(names.targets, source)?.unwrap_or(Targets::Names(default_targets));
    let exclude = f.targets(names.exclude, source)?;
    let layers_to_transform = match f.get("layers_to_transform") {
        None => None,
        Some(Value::Array(a)) => Some(a.iter().map(|v| v.as_i64().context("layers_to_transform must be layer numbers")).collect::<Result<Vec<_>>>()?),
        Some(v) => Some(vec![v.as_i64().with_context(|| format!("layers_to_transform must be a layer number or a list of them, got {v}"))?]),
    };
    let layers_pattern = match f.get("layers_pattern") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(a)) if a.iter().all(|v| v.is_string()) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        Some(v) => bail!("layers_pattern must be the name (or names) of the layer list, like \"layers\" or \"h\", got {v}"),
    };
    let modules_to_save = f.strings("modules_to_save")?.unwrap_or_default();
    Ok(Selection { targets, exclude, layers_to_transform, layers_pattern, modules_to_save, saved_optional: source == Source::Peft })
}

/// The field names a source uses for the settings every method shares.
struct Names {
    targets: &'static str,
    exclude: &'static str,
}

const OPTION_NAMES: Names = Names { targets: "targets", exclude: "exclude" };
const PEFT_NAMES: Names = Names { targets: "target_modules", exclude: "exclude_modules" };

fn names(source: Source) -> &'static Names {
    match source {
        Source::Options => &OPTION_NAMES,
        Source::Peft => &PEFT_NAMES,
    }
}

pub fn selection_json(s: &Selection, resolved: &[String]) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("target_modules".into(), s.targets.to_json(resolved));
    m.insert("exclude_modules".into(), s.exclude.as_ref().map(|e| e.to_json(&[])).unwrap_or(Value::Null));
    m.insert("layers_to_transform".into(), s.layers_to_transform.as_ref().map(|l| json!(l)).unwrap_or(Value::Null));
    m.insert("layers_pattern".into(), if s.layers_pattern.is_empty() { Value::Null } else { json!(s.layers_pattern) });
    m.insert("modules_to_save".into(), if s.modules_to_save.is_empty() { Value::Null } else { json!(s.modules_to_save) });
    m
}

#[derive(Clone, Debug)]
pub struct LoraConfig {
    pub r: i64,
    pub alpha: f64,
    pub dropout: f64,
    pub selection: Selection,
    pub use_rslora: bool,
    pub use_dora: bool,
    pub init: LoraInit,
    pub rank_pattern: Vec<(String, i64)>,
    pub alpha_pattern: Vec<(String, f64)>,
    pub bias: BiasMode,
}

/// PEFT's `get_pattern_key`: the first key `k` with `(.*\.)?(k)$` matching the module name.
fn pattern_value<T: Copy>(patterns: &[(String, T)], module: &str) -> Result<Option<T>> {
    for (key, value) in patterns {
        let re = regex::Regex::new(&format!(r"^(?:.*\.)?(?:{key})$")).with_context(|| format!("'{key}' is not a regular expression"))?;
        if re.is_match(module) {
            return Ok(Some(*value));
        }
    }
    Ok(None)
}

impl LoraConfig {
    /// `default_targets`: PEFT's per-architecture default when none are given.
    pub fn parse(map: Map<String, Value>, source: Source, default_targets: Vec<String>) -> Result<LoraConfig> {
        let what = match source {
            Source::Options => "LoRA options",
            Source::Peft => "adapter_config.json (LORA)",
        };
        let mut f = Fields::new(map, what);
        let opt = |o: &'static str, p: &'static str| if source == Source::Options { o } else { p };
        let r = f.int("r")?.unwrap_or(8);
        if r <= 0 {
            bail!("{what}: r must be a positive rank, got {r}");
        }
        let alpha = f.float(opt("alpha", "lora_alpha"))?.unwrap_or(8.0);
        let dropout = f.float(opt("dropout", "lora_dropout"))?.unwrap_or(0.0);
        if !(0.0..1.0).contains(&dropout) {
            bail!("{what}: dropout must be in [0, 1), got {dropout}");
        }
        let selection = selection(&mut f, source, names(source), default_targets)?;
        let use_rslora = f.bool("use_rslora")?.unwrap_or(false);
        let use_dora = f.bool("use_dora")?.unwrap_or(false);
        let init = LoraInit::parse(f.get(opt("init", "init_lora_weights")), source).with_context(|| what.to_string())?;
        let rank_pattern = f.pattern_map("rank_pattern")?.into_iter().map(|(k, v)| (k, v as i64)).collect::<Vec<_>>();
        if let Some((k, v)) = rank_pattern.iter().find(|(_, v)| *v <= 0) {
            bail!("{what}: rank_pattern '{k}' must be a positive rank, got {v}");
        }
        let alpha_pattern = f.pattern_map("alpha_pattern")?;
        let bias = BiasMode::parse(f.string("bias")?).with_context(|| what.to_string())?;
        if source == Source::Peft {
            f.get("fan_in_fan_out"); // the layer's own layout decides
            f.get("qalora_group_size"); // only read with use_qalora, which must be off
        }
        f.finish(&INFORMATIONAL)?;
        Ok(LoraConfig { r, alpha, dropout, selection, use_rslora, use_dora, init, rank_pattern, alpha_pattern, bias })
    }

    /// The rank and alpha of the adapter on `module` (rank_pattern and alpha_pattern first).
    pub fn rank_alpha(&self, module: &str) -> Result<(i64, f64)> {
        let r = pattern_value(&self.rank_pattern, module)?.unwrap_or(self.r);
        let alpha = pattern_value(&self.alpha_pattern, module)?.unwrap_or(self.alpha);
        Ok((r, alpha))
    }

    pub fn scaling(&self, r: i64, alpha: f64) -> f64 {
        if self.use_rslora {
            alpha / (r as f64).sqrt()
        } else {
            alpha / r as f64
        }
    }

    /// adapter_config.json as PEFT 0.21 writes it.
    pub fn to_peft(&self, resolved: &[String], fan_in_fan_out: bool, task_type: &str) -> Map<String, Value> {
        let mut m = selection_json(&self.selection, resolved);
        let patterns = |p: &[(String, f64)]| Value::Object(p.iter().map(|(k, v)| (k.clone(), json!(v))).collect());
        m.extend([
            ("peft_type".into(), json!("LORA")),
            ("task_type".into(), json!(task_type)),
            ("r".into(), json!(self.r)),
            ("lora_alpha".into(), json!(self.alpha)),
            ("lora_dropout".into(), json!(self.dropout)),
            ("use_rslora".into(), json!(self.use_rslora)),
            ("use_dora".into(), json!(self.use_dora)),
            ("init_lora_weights".into(), self.init.to_json()),
            ("rank_pattern".into(), Value::Object(self.rank_pattern.iter().map(|(k, v)| (k.clone(), json!(v))).collect())),
            ("alpha_pattern".into(), patterns(&self.alpha_pattern)),
            ("bias".into(), json!(self.bias.name())),
            ("fan_in_fan_out".into(), json!(fan_in_fan_out)),
            ("lora_bias".into(), json!(false)),
            ("inference_mode".into(), json!(true)),
            ("base_model_name_or_path".into(), Value::Null),
            ("revision".into(), Value::Null),
        ]);
        m
    }
}

#[derive(Clone, Debug)]
pub struct Ia3Config {
    pub selection: Selection,
    pub feedforward: Vec<String>,
    /// Start at ones (the identity); false draws them at random.
    pub init_ones: bool,
}

impl Ia3Config {
    pub fn parse(map: Map<String, Value>, source: Source, defaults: (Vec<String>, Vec<String>)) -> Result<Ia3Config> {
        let what = match source {
            Source::Options => "IA3 options",
            Source::Peft => "adapter_config.json (IA3)",
        };
        let mut f = Fields::new(map, what);
        let given = f.targets(names(source).targets, source)?.is_some();
        let (default_targets, default_ff) = defaults;
        let selection = selection(&mut f, source, names(source), default_targets)?;
        let feedforward = f.strings(if source == Source::Options { "feedforward" } else { "feedforward_modules" })?;
        let feedforward = match (feedforward, given) {
            (Some(ff), _) => ff,
            (None, false) => default_ff,
            (None, true) => Vec::new(),
        };
        if let Targets::Names(list) = &selection.targets {
            if let Some(bad) = feedforward.iter().find(|ff| !list.contains(ff)) {
                bail!("{what}: feedforward module '{bad}' is not among the targets ({})", list.join(", "));
            }
        }
        let init_ones = f.bool(if source == Source::Options { "init" } else { "init_ia3_weights" })?.unwrap_or(true);
        if source == Source::Peft {
            f.get("fan_in_fan_out");
        }
        f.finish(&INFORMATIONAL)?;
        Ok(Ia3Config { selection, feedforward, init_ones })
    }

    /// Whether the layer `module` is a feed-forward one (its input is scaled, not its output).
    pub fn is_feedforward(&self, module: &str) -> bool {
        crate::nn::names::NameMatcher::Suffixes(self.feedforward.clone()).matches(module).unwrap_or(false)
    }

    pub fn to_peft(&self, resolved: &[String], fan_in_fan_out: bool, task_type: &str) -> Map<String, Value> {
        let mut m = selection_json(&self.selection, resolved);
        let ff: Vec<&String> = resolved.iter().filter(|n| self.is_feedforward(n)).collect();
        if matches!(self.selection.targets, Targets::LuaPattern(_) | Targets::AllLinear) {
            m.insert("feedforward_modules".into(), json!(ff));
        } else {
            m.insert("feedforward_modules".into(), json!(self.feedforward));
        }
        m.extend([
            ("peft_type".into(), json!("IA3")),
            ("task_type".into(), json!(task_type)),
            ("init_ia3_weights".into(), json!(self.init_ones)),
            ("fan_in_fan_out".into(), json!(fan_in_fan_out)),
            ("inference_mode".into(), json!(true)),
            ("base_model_name_or_path".into(), Value::Null),
            ("revision".into(), Value::Null),
        ]);
        m
    }
}

/// How prompt tuning's virtual tokens start.
#[derive(Clone, Debug, PartialEq)]
pub enum PromptInit {
    /// N(0, 1), as `torch.nn.Embedding`.
    Random,
    /// The embeddings of this text's tokens, repeated or cut to the number of virtual tokens.
    Text(String),
}

/// What the model must be for an adapter file's prompt config (checked when loading).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PromptShape {
    pub token_dim: Option<i64>,
    pub num_layers: Option<i64>,
    pub num_attention_heads: Option<i64>,
}

fn prompt_shape(f: &mut Fields, source: Source) -> Result<PromptShape> {
    if source == Source::Options {
        return Ok(PromptShape::default());
    }
    let submodules = f.int("num_transformer_submodules")?.unwrap_or(1);
    if submodules != 1 {
        bail!("num_transformer_submodules = {submodules} (encoder-decoder models) is not supported");
    }
    Ok(PromptShape { token_dim: f.int("token_dim")?, num_layers: f.int("num_layers")?, num_attention_heads: f.int("num_attention_heads")? })
}

#[derive(Clone, Debug)]
pub struct PromptConfig {
    pub num_virtual_tokens: i64,
    pub init: PromptInit,
    pub shape: PromptShape,
    /// The token ids of the init text, set by whoever holds the tokenizer.
    pub init_ids: Option<Vec<i64>>,
}

fn virtual_tokens(f: &mut Fields, what: &str) -> Result<i64> {
    match f.int("num_virtual_tokens")? {
        Some(n) if n > 0 => Ok(n),
        Some(n) => bail!("{what}: num_virtual_tokens must be positive, got {n}"),
        None => bail!("{what}: give num_virtual_tokens"),
    }
}

impl PromptConfig {
    pub fn parse(map: Map<String, Value>, source: Source) -> Result<PromptConfig> {
        let what = if source == Source::Options { "prompt tuning options" } else { "adapter_config.json (PROMPT_TUNING)" };
        let mut f = Fields::new(map, what);
        let num_virtual_tokens = virtual_tokens(&mut f, what)?;
        let (init_key, text_key) = if source == Source::Options { ("init", "init_text") } else { ("prompt_tuning_init", "prompt_tuning_init_text") };
        let init = match f.string(init_key)?.map(|s| s.to_ascii_lowercase()).as_deref() {
            None | Some("random") => PromptInit::Random,
            Some("text") => PromptInit::Text(f.string(text_key)?.with_context(|| format!("{what}: init \"text\" needs {text_key}"))?),
            Some(other) => bail!("{what}: init '{other}' is not supported (supported: \"random\", \"text\")"),
        };
        if init == PromptInit::Random {
            f.get(text_key);
        }
        let shape = prompt_shape(&mut f, source)?;
        f.finish(&[&INFORMATIONAL[..], &["tokenizer_name_or_path"]].concat())?;
        Ok(PromptConfig { num_virtual_tokens, init, shape, init_ids: None })
    }

    pub fn to_peft(&self, hidden: i64, (layers, heads): (i64, i64), task_type: &str) -> Map<String, Value> {
        let (init, text) = match &self.init {
            PromptInit::Random => ("RANDOM", Value::Null),
            PromptInit::Text(t) => ("TEXT", json!(t)),
        };
        json!({
            "peft_type": "PROMPT_TUNING", "task_type": task_type, "num_virtual_tokens": self.num_virtual_tokens,
            "token_dim": hidden, "num_transformer_submodules": 1, "num_attention_heads": heads, "num_layers": layers,
            "prompt_tuning_init": init, "prompt_tuning_init_text": text, "tokenizer_name_or_path": null,
            "inference_mode": true, "base_model_name_or_path": null, "revision": null
        })
        .as_object()
        .cloned()
        .unwrap_or_default()
    }
}

#[derive(Clone, Debug)]
pub struct PrefixConfig {
    pub num_virtual_tokens: i64,
    /// Train through a tanh MLP of this hidden size (PEFT's `prefix_projection`).
    pub projection: Option<i64>,
    pub shape: PromptShape,
}

impl PrefixConfig {
    pub fn parse(map: Map<String, Value>, source: Source) -> Result<PrefixConfig> {
        let what = if source == Source::Options { "prefix tuning options" } else { "adapter_config.json (PREFIX_TUNING)" };
        let mut f = Fields::new(map, what);
        let num_virtual_tokens = virtual_tokens(&mut f, what)?;
        let projection_key = if source == Source::Options { "projection" } else { "prefix_projection" };
        let projected = f.bool(projection_key)?.unwrap_or(false);
        let hidden = f.int("encoder_hidden_size")?;
        let shape = prompt_shape(&mut f, source)?;
        let inference = source == Source::Peft && f.bool("inference_mode")?.unwrap_or(true);
        f.finish(&INFORMATIONAL)?;
        // A saved prefix holds the folded table: it loads without its MLP, as PEFT loads it.
        let projection = match (projected && !inference, hidden) {
            (false, _) => None,
            (true, Some(h)) if h > 0 => Some(h),
            (true, _) => bail!("{what}: a projected prefix needs encoder_hidden_size (the MLP's width)"),
        };
        Ok(PrefixConfig { num_virtual_tokens, projection, shape })
    }

    pub fn to_peft(&self, kv_dim: i64, (layers, heads): (i64, i64), task_type: &str) -> Map<String, Value> {
        // The weights saved are the folded table, so the saved config has no projection.
        json!({
            "peft_type": "PREFIX_TUNING", "task_type": task_type, "num_virtual_tokens": self.num_virtual_tokens,
            "token_dim": kv_dim, "num_transformer_submodules": 1, "num_attention_heads": heads, "num_layers": layers,
            "encoder_hidden_size": self.projection.unwrap_or(kv_dim), "prefix_projection": false,
            "inference_mode": true, "base_model_name_or_path": null, "revision": null
        })
        .as_object()
        .cloned()
        .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_field_not_understood_is_named_unless_it_is_off() {
        let ok = LoraConfig::parse(map(json!({"r": 4, "lora_alpha": 8, "target_modules": ["q_proj"], "eva_config": null, "use_qalora": false, "loftq_config": {}})), Source::Peft, vec![]).unwrap();
        assert_eq!((ok.r, ok.alpha), (4, 8.0));
        let err = LoraConfig::parse(map(json!({"r": 4, "target_modules": ["q_proj"], "use_qalora": true})), Source::Peft, vec![]).unwrap_err();
        assert!(err.to_string().contains("'use_qalora' = true"), "{err}");
        let err = LoraConfig::parse(map(json!({"rr": 4})), Source::Options, vec!["q".into()]).unwrap_err();
        assert!(err.to_string().contains("'rr'"), "{err}");
    }

    #[test]
    fn rank_and_alpha_patterns_match_as_peft() {
        let c = LoraConfig::parse(map(json!({"r": 4, "targets": ["q_proj", "v_proj"], "rank_pattern": {"v_proj": 2}, "alpha_pattern": {"layers.1.self_attn.q_proj": 3}})), Source::Options, vec![]).unwrap();
        assert_eq!(c.rank_alpha("model.layers.0.self_attn.v_proj").unwrap(), (2, 8.0));
        assert_eq!(c.rank_alpha("model.layers.1.self_attn.q_proj").unwrap(), (4, 3.0));
        assert_eq!(c.rank_alpha("model.layers.0.self_attn.q_proj").unwrap(), (4, 8.0));
    }

    #[test]
    fn r_zero_is_refused() {
        assert!(LoraConfig::parse(map(json!({"r": 0})), Source::Options, vec!["q".into()]).unwrap_err().to_string().contains("positive"));
    }
}
