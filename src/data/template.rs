//! Prompt templates: an example becomes `{ prompt = ..., response = ... }` (its other fields
//! kept), by Alpaca's template or by format strings whose `{field}` placeholders name fields
//! (`{{` and `}}` are literal braces).

use anyhow::{bail, Result};

use super::dataset::Transform;
use super::value::Value;

const ALPACA_WITH_INPUT: &str = "Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n";
const ALPACA_NO_INPUT: &str = "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n";

pub enum Template {
    /// Stanford Alpaca's: `instruction`, optional `input`, `output`.
    Alpaca,
    Format { prompt: String, response: Option<String> },
}

pub const BUILT_IN: [&str; 1] = ["alpaca"];

impl Template {
    pub fn named(name: &str) -> Result<Template> {
        match name {
            "alpaca" => Ok(Template::Alpaca),
            other => bail!("no built-in template \"{other}\" (built in: {}; or give {{ prompt = \"...{{field}}...\", response = \"{{field}}\" }})", BUILT_IN.join(", ")),
        }
    }

    /// A template of format strings, checked for unbalanced braces.
    pub fn format(prompt: String, response: Option<String>) -> Result<Template> {
        fill(&prompt, &mut |_| Ok(String::new())).map_err(|e| anyhow::anyhow!("prompt template: {e}"))?;
        if let Some(r) = &response {
            fill(r, &mut |_| Ok(String::new())).map_err(|e| anyhow::anyhow!("response template: {e}"))?;
        }
        Ok(Template::Format { prompt, response })
    }

    fn render(&self, ex: &Value, index: u64) -> Result<(String, Option<String>)> {
        let mut field = |name: &str| -> Result<String> {
            Ok(match ex.field(name, index)? {
                Value::Str(s) => s.clone(),
                Value::Int(i) => i.to_string(),
                Value::Float(x) => x.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => String::new(),
                other => bail!("example {}: the field '{name}' is a {}; a template takes strings and numbers", index + 1, other.type_name()),
            })
        };
        match self {
            Template::Alpaca => {
                let has_input = matches!(ex.as_record().and_then(|r| r.get("input")), Some(Value::Str(s)) if !s.is_empty());
                let prompt = fill(if has_input { ALPACA_WITH_INPUT } else { ALPACA_NO_INPUT }, &mut field)?;
                Ok((prompt, Some(field("output")?)))
            }
            Template::Format { prompt, response } => Ok((fill(prompt, &mut field)?, response.as_ref().map(|r| fill(r, &mut field)).transpose()?)),
        }
    }
}

/// `template` with each `{name}` replaced by `field(name)`.
fn fill(template: &str, field: &mut dyn FnMut(&str) -> Result<String>) -> Result<String> {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let c = rest.as_bytes()[i];
        let after = &rest[i + 1..];
        if after.as_bytes().first() == Some(&c) {
            out.push(c as char);
            rest = &after[1..];
            continue;
        }
        if c == b'}' {
            bail!("a '}}' without its '{{' (write '}}}}' for a literal brace)");
        }
        let Some(end) = after.find('}') else { bail!("a '{{' without its '}}' (write '{{{{' for a literal brace)") };
        let name = after[..end].trim();
        if name.is_empty() || name.contains('{') {
            bail!("'{{{}}}' does not name a field", &after[..end]);
        }
        out.push_str(&field(name)?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl Transform for Template {
    fn apply(&self, examples: Vec<Value>, first: u64) -> Result<Vec<Value>> {
        examples
            .into_iter()
            .enumerate()
            .map(|(k, ex)| {
                let index = first + k as u64;
                let (prompt, response) = self.render(&ex, index)?;
                let Value::Record(mut r) = ex else { bail!("example {} is a {}, a template takes records", index + 1, ex.type_name()) };
                r.insert("prompt", Value::Str(prompt));
                if let Some(resp) = response {
                    r.insert("response", Value::Str(resp));
                }
                Ok(Value::Record(r))
            })
            .collect()
    }
}
