//! Tokenisation for training, spread over all cores: each example becomes `input_ids` and
//! `labels`, where labels are -100 on tokens that are not trained ("train on responses only": the
//! prompt of a `{ prompt, response }` example, everything but the assistant's turns of a chat).
//! Plain text is `{ text }` (or the field named); chats are `{ messages }` rendered by the
//! tokenizer's chat template. Prompt and response are encoded as one text and split by the
//! tokens' offsets, so the ids are exactly those of the whole text; a token that reaches into the
//! response (" Hello" after "assistant:") is trained. Truncation keeps
//! the first (or last) `max_length` tokens.

use std::ops::Range;
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use rayon::prelude::*;

use super::dataset::Transform;
use super::value::{Record, Value};
use crate::tokenizer::{chat, Tok};

/// The label of a token that is not trained.
pub const IGNORE: i64 = -100;

#[derive(Clone, Debug, Default)]
pub struct TokenizeOptions {
    /// The text field of plain examples (default `text`).
    pub field: Option<String>,
    /// Labels only on responses / assistant turns (default true).
    pub response_only: bool,
    /// Append the tokenizer's EOS (default: true, except for chats, whose template ends turns).
    pub add_eos: Option<bool>,
    pub max_length: Option<usize>,
    /// Cut from the start instead of the end.
    pub truncate_left: bool,
    /// Fields of the example carried over unchanged.
    pub keep: Vec<String>,
    /// Which of the tokenizer's named chat templates.
    pub chat_template: Option<String>,
}

pub struct Tokenize {
    pub tok: Arc<Tok>,
    pub o: TokenizeOptions,
}

/// One example's text and what of it is trained, gathered before the parallel part.
enum Job {
    /// `trained`: byte ranges of `text` whose tokens get labels (None: all).
    Text { text: String, trained: Option<Vec<Range<usize>>>, specials: bool },
    Chat { messages: serde_json::Value },
}

impl Tokenize {
    fn job(&self, ex: &Value, index: u64) -> Result<Job> {
        if let Some(f) = &self.o.field {
            return Ok(Job::Text { text: ex.text_field(f, index)?.to_string(), trained: None, specials: true });
        }
        let Some(r) = ex.as_record() else { bail!("example {} is a {}; tokenize takes records ({{ text }}, {{ prompt, response }} or {{ messages }})", index + 1, ex.type_name()) };
        if r.get("messages").is_some() {
            return Ok(Job::Chat { messages: ex.field("messages", index)?.to_json()? });
        }
        if r.get("prompt").is_some() {
            let prompt = ex.text_field("prompt", index)?;
            let response = ex.text_field("response", index)?;
            let text = format!("{prompt}{response}");
            let trained = self.o.response_only.then(|| vec![prompt.len()..text.len()]);
            return Ok(Job::Text { text, trained, specials: true });
        }
        if r.get("text").is_some() {
            return Ok(Job::Text { text: ex.text_field("text", index)?.to_string(), trained: None, specials: true });
        }
        bail!(
            "example {} has none of the fields tokenize reads: text, prompt and response, or messages (it has: {}); name another text field with {{ field = ... }}",
            index + 1,
            r.keys().collect::<Vec<_>>().join(", ")
        )
    }

    /// The rendered chat and the byte ranges of its assistant turns.
    fn render_chat(&self, messages: &serde_json::Value) -> Result<(String, Vec<Range<usize>>)> {
        let template = self.tok.chat_template(self.o.chat_template.as_deref())?;
        let list = messages.as_array().ok_or_else(|| anyhow!("messages must be a list of {{ role, content }}"))?;
        let none = serde_json::Map::new();
        let render = |upto: usize, prompt: bool| chat::render(template, &serde_json::Value::Array(list[..upto].to_vec()), prompt, &self.tok.specials, &none);
        let full = render(list.len(), false)?;
        let mut trained = Vec::new();
        for (i, m) in list.iter().enumerate() {
            if m.get("role").and_then(|r| r.as_str()) != Some("assistant") {
                continue;
            }
            let before = render(i, true)?;
            let upto = render(i + 1, false)?;
            if !upto.starts_with(&before) || !full.starts_with(&upto) {
                bail!("the chat template does not render a conversation as an extension of its beginning, so the assistant's turns cannot be found in it (train on every token with {{ response_only = false }})");
            }
            trained.push(before.len()..upto.len());
        }
        Ok((full, trained))
    }

    /// Ids and labels of one job.
    fn encode(&self, job: Job) -> Result<(Vec<i64>, Vec<i64>)> {
        let (text, trained, specials, eos_default) = match job {
            Job::Text { text, trained, specials } => (text, trained, specials, true),
            Job::Chat { messages } => {
                let (text, turns) = self.render_chat(&messages)?;
                (text, self.o.response_only.then_some(turns), false, false)
            }
        };
        let enc = self.tok.encode_input(&text, None, specials, None)?;
        let mut ids: Vec<i64> = enc.get_ids().iter().map(|&i| i as i64).collect();
        let mut labels: Vec<i64> = match &trained {
            None => ids.clone(),
            Some(ranges) => enc
                .get_ids()
                .iter()
                .zip(enc.get_offsets())
                .zip(enc.get_special_tokens_mask())
                .map(|((&id, &(start, end)), &special)| {
                    let inside = special == 0 && end > start && ranges.iter().any(|r| start < r.end && end > r.start);
                    if inside { id as i64 } else { IGNORE }
                })
                .collect(),
        };
        if self.o.add_eos.unwrap_or(eos_default) {
            let (_, eos) = self.tok.specials.eos.clone().ok_or_else(|| anyhow!("add_eos: this tokenizer names no EOS token"))?;
            ids.push(eos as i64);
            labels.push(eos as i64);
        }
        if let Some(max) = self.o.max_length {
            if ids.len() > max {
                let cut = ids.len() - max;
                if self.o.truncate_left {
                    ids.drain(..cut);
                    labels.drain(..cut);
                } else {
                    ids.truncate(max);
                    labels.truncate(max);
                }
            }
        }
        Ok((ids, labels))
    }
}

impl Transform for Tokenize {
    fn apply(&self, examples: Vec<Value>, first: u64) -> Result<Vec<Value>> {
        let jobs: Vec<Job> = examples.iter().enumerate().map(|(k, ex)| self.job(ex, first + k as u64)).collect::<Result<_>>()?;
        let encoded: Vec<Result<(Vec<i64>, Vec<i64>)>> = jobs.into_par_iter().map(|j| self.encode(j)).collect();
        examples
            .into_iter()
            .zip(encoded)
            .enumerate()
            .map(|(k, (ex, enc))| {
                let (ids, labels) = enc.map_err(|e| anyhow!("example {}: {e}", first + k as u64 + 1))?;
                let mut out = Record(vec![("input_ids".into(), Value::ids(ids)), ("labels".into(), Value::ids(labels))]);
                for name in &self.o.keep {
                    out.insert(name, ex.field(name, first + k as u64)?.clone());
                }
                Ok(Value::Record(out))
            })
            .collect()
    }

    fn chunk(&self) -> usize {
        1024
    }
}
