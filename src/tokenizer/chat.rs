//! Chat templates: the Jinja template in tokenizer_config.json rendered with minijinja the way
//! transformers' `apply_chat_template` renders it (trim_blocks, lstrip_blocks, loop controls,
//! `raise_exception`, `tojson`, Python string methods), with `messages`, `add_generation_prompt`
//! and the special tokens in scope. A template runs on a fuel budget, so that none can hang.

use anyhow::{anyhow, Result};
use minijinja::{Environment, Error, ErrorKind};
use serde_json::Value;

use super::Specials;

/// The most steps a template may take: a real template over a long conversation takes
/// thousands; one that loops without end (or over `range(10**9)`) stops here with an error.
pub const FUEL: u64 = 20_000_000;

fn raise_exception(message: String) -> Result<String, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

pub fn render(template: &str, messages: &Value, add_generation_prompt: bool, specials: &Specials, extra: &serde_json::Map<String, Value>) -> Result<String> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_fuel(Some(FUEL));
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", raise_exception);
    env.add_template("chat", template).map_err(|e| anyhow!("the chat template does not parse: {e}"))?;
    let mut ctx = serde_json::Map::new();
    for (key, token) in [("bos_token", &specials.bos), ("eos_token", &specials.eos), ("pad_token", &specials.pad), ("unk_token", &specials.unk)] {
        if let Some((text, _)) = token {
            ctx.insert(key.into(), Value::String(text.clone()));
        }
    }
    ctx.insert("messages".into(), messages.clone());
    ctx.insert("add_generation_prompt".into(), Value::Bool(add_generation_prompt));
    for (k, v) in extra {
        ctx.insert(k.clone(), v.clone());
    }
    let tmpl = env.get_template("chat").map_err(|e| anyhow!("{e}"))?;
    tmpl.render(Value::Object(ctx)).map_err(|e| match e.kind() {
        ErrorKind::OutOfFuel => anyhow!("the chat template ran for more than {FUEL} steps and was stopped (a loop without end, or over too much)"),
        _ => anyhow!("the chat template failed: {e}"),
    })
}
