//! `mt.tokenizer`: `load(dir_or_file)` (nil, message when it cannot), `train_bpe{...}`, and on a
//! tokenizer `encode`, `encode_batch` (padded tensors and attention masks), `decode`, the special
//! ids, `apply_chat_template`, `save`. Ids are the tokenizer's own (0-based), in Lua tables.

use std::path::Path;

use mlua::{Lua, MultiValue, Table, UserData, UserDataMethods, Value};
use serde::Deserialize;
use tch::Kind;

use super::args::{describe, to_json, failure, misuse, options, required_options, OrMisuse};
use super::tensor::wrap;
use crate::tokenizer::batch::{BatchOptions, EncodeOptions};
use crate::tokenizer::{chat, train_bpe, Tok};
use super::callbacks::{function, method};

pub struct LuaTokenizer(pub std::sync::Arc<Tok>);

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DecodeOptions {
    /// Drop special tokens (default false, as transformers).
    skip_special_tokens: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ChatOptions {
    /// End with the template's prompt for the assistant's turn.
    add_generation_prompt: Option<bool>,
    /// Return token ids instead of text.
    tokenize: Option<bool>,
    /// Which of several named templates (tokenizer_config.json's list form) to use.
    chat_template: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainOptions {
    files: Vec<String>,
    vocab_size: usize,
    special_tokens: Option<Vec<String>>,
    min_frequency: Option<u64>,
}

fn ids_from(call: &str, v: &Value) -> mlua::Result<Vec<i64>> {
    match v {
        Value::Table(t) => t
            .sequence_values::<Value>()
            .enumerate()
            .map(|(i, id)| match id? {
                Value::Integer(n) => Ok(n),
                Value::Number(n) if n.fract() == 0.0 && n.abs() < 2f64.powi(53) => Ok(n as i64),
                other => Err(misuse(call, format!("ids must be integers: element {} is {}", i + 1, describe(&other)))),
            })
            .collect(),
        Value::UserData(_) => {
            let t = super::tensor::tensor_arg(call, v)?;
            if t.dim() != 1 {
                return Err(misuse(call, format!("expected a 1-D tensor of ids, got shape {:?}", t.size())));
            }
            Vec::<i64>::try_from(&t.f_to_kind(Kind::Int64).or_misuse(call)?).or_misuse(call)
        }
        other => Err(misuse(call, format!("expected ids (a table or a tensor), got {}", super::args::describe(other)))),
    }
}

/// `encode_batch(texts, opts?)` or `encode_batch(texts, pairs, opts?)`.
fn encode_batch(lua: &Lua, tok: &Tok, texts: Vec<String>, second: Value, third: Option<Table>) -> mlua::Result<Table> {
    let call = "tokenizer.encode_batch";
    let (pairs, opts) = match second {
        Value::Nil => (None, third),
        Value::Table(t) if t.raw_len() > 0 => {
            let pairs = t.sequence_values::<String>().collect::<mlua::Result<Vec<_>>>().map_err(|_| misuse(call, "pairs must be a list of strings, one per text"))?;
            (Some(pairs), third)
        }
        Value::Table(t) if third.is_none() => (None, Some(t)),
        other => return Err(misuse(call, format!("expected (texts, opts?) or (texts, pairs, opts?), got {} as the second argument", super::args::describe(&other)))),
    };
    let o: BatchOptions = options(lua, call, opts)?;
    let batch = tok.encode_batch(&texts, pairs.as_deref(), &o).or_misuse(call)?;
    let out = lua.create_table()?;
    out.set("input_ids", wrap(lua, batch.input_ids)?)?;
    out.set("attention_mask", wrap(lua, batch.attention_mask)?)?;
    out.set("token_type_ids", wrap(lua, batch.token_type_ids)?)?;
    if let Some(m) = batch.overflow_to_sample_mapping {
        out.set("overflow_to_sample_mapping", wrap(lua, m)?)?;
    }
    Ok(out)
}

/// `encode(text, opts?)` or `encode(text, pair, opts?)`: ids (and offsets).
fn encode(lua: &Lua, tok: &Tok, text: String, second: Value, third: Option<Table>) -> mlua::Result<MultiValue> {
    let call = "tokenizer.encode";
    let (pair, opts) = match second {
        Value::Nil => (None, third),
        Value::String(s) => (Some(super::args::text(call, "the pair text", &s)?), third),
        Value::Table(t) if third.is_none() => (None, Some(t)),
        other => return Err(misuse(call, format!("expected (text, opts?) or (text, pair, opts?), got {} as the second argument", super::args::describe(&other)))),
    };
    let o: EncodeOptions = options(lua, call, opts)?;
    let truncation = o.truncation(tok).or_misuse(call)?;
    let enc = tok.encode_input(&text, pair.as_deref(), o.add_special_tokens.unwrap_or(true), truncation.as_ref()).or_misuse(call)?;
    let ids = lua.create_sequence_from(enc.get_ids().iter().map(|i| *i as i64))?;
    if o.offsets.unwrap_or(false) {
        let spans = lua.create_table()?;
        for (s, e) in enc.get_offsets() {
            spans.raw_push(lua.create_sequence_from([*s as i64, *e as i64])?)?;
        }
        return Ok(MultiValue::from_iter([Value::Table(ids), Value::Table(spans)]));
    }
    Ok(MultiValue::from_iter([Value::Table(ids)]))
}

fn special(tok: &Tok, which: &str) -> Option<u32> {
    let s = &tok.specials;
    match which {
        "bos" => s.bos.as_ref(),
        "eos" => s.eos.as_ref(),
        "pad" => s.pad.as_ref(),
        _ => s.unk.as_ref(),
    }
    .map(|p| p.1)
}

impl UserData for LuaTokenizer {
    fn add_fields<F: mlua::UserDataFields<Self>>(fields: &mut F) {
        fields.add_meta_field(mlua::MetaMethod::Type, "tokenizer");
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        method(methods, "encode", "tokenizer.encode", |lua, this, (text, second, third): (String, Value, Option<Table>)| encode(lua, &this.0, text, second, third));
        method(methods, "encode_batch", "tokenizer.encode_batch", |lua, this, (texts, second, third): (Vec<String>, Value, Option<Table>)| encode_batch(lua, &this.0, texts, second, third));
        method(methods, "decode", "tokenizer.decode", |lua, this, (ids, opts): (Value, Option<Table>)| {
            let call = "tokenizer.decode";
            let o: DecodeOptions = options(lua, call, opts)?;
            this.0.decode_ids(&ids_from(call, &ids)?, o.skip_special_tokens.unwrap_or(false)).or_misuse(call)
        });
        method(methods, "vocab_size", "tokenizer.vocab_size", |_, this, ()| Ok(this.0.vocab_size()));
        for which in ["bos", "eos", "pad", "unk"] {
            method(methods, &format!("{which}_id"), format!("tokenizer.{which}_id"), move |_, this, ()| Ok(special(&this.0, which)));
        }
        method(methods, "token_to_id", "tokenizer.token_to_id", |_, this, token: String| Ok(this.0.token_to_id(&token)));
        method(methods, "id_to_token", "tokenizer.id_to_token", |_, this, id: u32| Ok(this.0.inner.id_to_token(id)));
        method(methods, "apply_chat_template", "tokenizer.apply_chat_template", |lua, this, (messages, opts): (Value, Option<Table>)| {
            let call = "tokenizer.apply_chat_template";
            let o: ChatOptions = options(lua, call, opts)?;
            let template = this.0.chat_template(o.chat_template.as_deref()).or_misuse(call)?;
            let messages = match to_json(call, "messages", &messages)? {
                // An empty table is an empty list of messages here.
                serde_json::Value::Object(m) if m.is_empty() => serde_json::Value::Array(Vec::new()),
                other => other,
            };
            let text = chat::render(template, &messages, o.add_generation_prompt.unwrap_or(false), &this.0.specials, &serde_json::Map::new()).or_misuse(call)?;
            if o.tokenize.unwrap_or(false) {
                let (ids, _) = this.0.encode(&text, false).or_misuse(call)?;
                return Ok(Value::Table(lua.create_sequence_from(ids.into_iter().map(i64::from))?));
            }
            Ok(Value::String(lua.create_string(&text)?))
        });
        method(methods, "save", "tokenizer.save", |lua, this, path: String| match this.0.inner.save(&path, true) {
            Ok(()) => Ok(MultiValue::from_iter([Value::Boolean(true)])),
            Err(e) => failure(lua, format!("tokenizer.save: {e}")),
        });
    }
}

pub fn create_table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("load", function(lua, "tokenizer.load", |lua, path: String| match Tok::load(Path::new(&path)) {
        Ok(tok) => Ok(MultiValue::from_iter([Value::UserData(lua.create_userdata(LuaTokenizer(std::sync::Arc::new(tok)))?)])),
        Err(e) => failure(lua, format!("tokenizer.load: {e:#}")),
    })?)?;
    t.set("train_bpe", function(lua, "tokenizer.train_bpe", |_, opts: Table| {
        let call = "tokenizer.train_bpe";
        let o: TrainOptions = required_options(call, opts, &[])?;
        let tok = train_bpe(&o.files, o.vocab_size, &o.special_tokens.unwrap_or_default(), o.min_frequency.unwrap_or(2)).or_misuse(call)?;
        Ok(LuaTokenizer(std::sync::Arc::new(tok)))
    })?)?;
    Ok(t)
}
