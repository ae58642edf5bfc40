//! A tokenizer from a GGUF file's `tokenizer.ggml.*` metadata, built as transformers builds it
//! (integrations/gguf/gguf_tokenizer_mapping.py), so that ids agree: a byte-level BPE for `gpt2`
//! vocabularies (merges from the file, the split regex of known `pre` types), a BPE with byte
//! fallback and Metaspace for SentencePiece `llama` vocabularies (merges from the file, or
//! recovered from the scores as transformers' `generate_merges` does); control tokens become
//! special added tokens, user-defined ones plain added tokens; bos/eos/unk/pad, `add_bos_token`,
//! `add_eos_token` and `tokenizer.chat_template` go to the tokenizer_config.json equivalent.
//! Also the way back: the metadata that describes a loaded tokenizer, for writing a GGUF.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value as Json};

use super::reader::{Gguf, Value};

/// llama.cpp's token types.
pub const NORMAL: i64 = 1;
pub const UNKNOWN: i64 = 2;
pub const CONTROL: i64 = 3;
pub const USER_DEFINED: i64 = 4;
pub const BYTE: i64 = 6;

const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const TEKKEN_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The split regex of a `tokenizer.ggml.pre` type (transformers' GGUF_PRE_TOKENIZER_SPLITS);
/// other types use byte-level BPE's own (GPT-2's) regex.
fn split_regex(pre: &str) -> Option<&'static str> {
    Some(match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2" | "jina-v5-nano" | "dbrx" | "smaug-bpe" => LLAMA3_SPLIT,
        "tekken" => TEKKEN_SPLIT,
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" => QWEN2_SPLIT,
        "qwen35" => QWEN35_SPLIT,
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => GPT4O_SPLIT,
        _ => return None,
    })
}

/// GPT-2's byte-to-character table: printable bytes stand for themselves, the others for the
/// characters from U+0100 on.
pub fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        table[b as usize] = if printable {
            b as char
        } else {
            next += 1;
            char::from_u32(next - 1).expect("valid char")
        };
    }
    table
}

fn strings<'a>(g: &'a Gguf, key: &str) -> Result<Option<Vec<&'a str>>> {
    match g.get(key) {
        None => Ok(None),
        Some(v) => {
            let items = v.as_array().with_context(|| format!("metadata '{key}' must be an array of strings"))?;
            items.iter().map(|s| s.as_str().with_context(|| format!("metadata '{key}' must be an array of strings"))).collect::<Result<Vec<_>>>().map(Some)
        }
    }
}

fn numbers(g: &Gguf, key: &str, len: usize) -> Result<Option<Vec<f64>>> {
    let Some(v) = g.get(key) else { return Ok(None) };
    let items = v.as_array().with_context(|| format!("metadata '{key}' must be an array of numbers"))?;
    if items.len() != len {
        bail!("metadata '{key}' has {} entries for {len} tokens", items.len());
    }
    items.iter().map(|x| x.as_f64().with_context(|| format!("metadata '{key}' must be an array of numbers"))).collect::<Result<Vec<_>>>().map(Some)
}

fn token_id(g: &Gguf, name: &str, len: usize) -> Result<Option<usize>> {
    let key = format!("tokenizer.ggml.{name}");
    let Some(v) = g.get(&key) else { return Ok(None) };
    let id = v.as_i64().with_context(|| format!("metadata '{key}' must be an integer"))?;
    if id < 0 || id as usize >= len {
        bail!("metadata '{key}' is {id}, outside the vocabulary of {len} tokens");
    }
    Ok(Some(id as usize))
}

/// Merges recovered from a vocabulary and its scores, as transformers' `generate_merges`: every
/// split of a token into two tokens of the vocabulary, ordered by the token's score (highest
/// first), then by the lengths of the two parts.
fn generate_merges(tokens: &[&str], scores: &[f64]) -> Vec<(String, String)> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, t) in tokens.iter().enumerate() {
        index.insert(t, i);
    }
    // Python's dict(zip(tokens, scores)): a repeated token keeps its first place, its last score.
    let mut order: Vec<&str> = Vec::new();
    let mut score: HashMap<&str, f64> = HashMap::new();
    for (t, s) in tokens.iter().zip(scores) {
        if score.insert(t, *s).is_none() {
            order.push(t);
        }
    }
    let mut merges: Vec<(&str, &str, f64)> = Vec::new();
    for token in order {
        let mut local: Vec<(&str, &str, f64)> = Vec::new();
        for (at, _) in token.char_indices().skip(1) {
            let (l, r) = token.split_at(at);
            if index.contains_key(l) && index.contains_key(r) {
                local.push((l, r, score[token]));
            }
        }
        local.sort_by_key(|(l, r, _)| (index[l], index[r]));
        merges.extend(local);
    }
    // A stable sort, highest key first (Python's sorted(..., reverse=True) keeps ties in order);
    // scores compare by total order, so that a NaN in a file cannot break the sort.
    merges.sort_by(|a, b| {
        let key = |m: &(&str, &str, f64)| (m.2, m.0.chars().count(), m.1.chars().count());
        let (ka, kb) = (key(a), key(b));
        kb.0.total_cmp(&ka.0).then(kb.1.cmp(&ka.1)).then(kb.2.cmp(&ka.2))
    });
    merges.into_iter().map(|(l, r, _)| (l.to_string(), r.to_string())).collect()
}

fn added(id: usize, content: &str, special: bool) -> Json {
    json!({ "id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": special })
}

/// tokenizer.json and tokenizer_config.json (as JSON values) for the tokenizer the file describes.
pub fn tokenizer_json(g: &Gguf) -> Result<(Json, Json)> {
    let tokens = strings(g, "tokenizer.ggml.tokens")?.context("the file has no tokenizer (no 'tokenizer.ggml.tokens')")?;
    let n = tokens.len();
    let kind = g.get("tokenizer.ggml.model").and_then(Value::as_str).unwrap_or("llama");
    let types: Vec<i64> = numbers(g, "tokenizer.ggml.token_type", n)?.map(|v| v.into_iter().map(|x| x as i64).collect()).unwrap_or_default();
    let file_merges = strings(g, "tokenizer.ggml.merges")?;
    let parse_merges = |m: Vec<&str>| -> Result<Vec<(String, String)>> {
        m.into_iter().map(|s| s.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())).with_context(|| format!("merge '{s}' is not two tokens separated by a space"))).collect()
    };
    let byte_level = kind == "gpt2";
    let spelling = bytes_to_unicode();
    let (vocab_tokens, merges): (Vec<String>, Vec<(String, String)>) = match kind {
        "gpt2" => {
            let alphabet: std::collections::HashSet<char> = spelling.iter().copied().collect();
            let vocab = tokens.iter().map(|t| if t.chars().all(|c| alphabet.contains(&c)) { t.to_string() } else { t.bytes().map(|b| spelling[b as usize]).collect() }).collect();
            (vocab, parse_merges(file_merges.context("a gpt2 vocabulary needs 'tokenizer.ggml.merges'")?)?)
        }
        "llama" => {
            let merges = match file_merges {
                Some(m) => parse_merges(m)?,
                None => {
                    let scores = numbers(g, "tokenizer.ggml.scores", n)?.context("a llama vocabulary without merges needs 'tokenizer.ggml.scores'")?;
                    generate_merges(&tokens, &scores)
                }
            };
            (tokens.iter().map(|t| t.to_string()).collect(), merges)
        }
        other => bail!("tokenizer.ggml.model '{other}' is not supported (supported: gpt2, llama)"),
    };
    let mut vocab = Map::new();
    for (i, t) in vocab_tokens.iter().enumerate() {
        vocab.insert(t.clone(), json!(i));
    }
    // Special tokens: control tokens (in a byte-level vocabulary only those spelled in its
    // alphabet, as transformers skips llama.cpp's mislabels), and those the ids name.
    let alphabet_ok = |t: &str| !byte_level || t.chars().all(|c| spelling.contains(&c));
    let named: Vec<(&str, Option<usize>)> = ["bos_token_id", "eos_token_id", "unknown_token_id", "padding_token_id"].iter().map(|k| Ok((*k, token_id(g, k, n)?))).collect::<Result<_>>()?;
    let mut added_tokens = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let ty = types.get(i).copied().unwrap_or(NORMAL);
        let is_named = named.iter().any(|(_, id)| *id == Some(i)) && !byte_level;
        if (ty == CONTROL && alphabet_ok(t)) || (is_named && ty != BYTE) {
            added_tokens.push(added(i, t, true));
        } else if ty == USER_DEFINED {
            added_tokens.push(added(i, t, false));
        }
    }
    let flag = |key: &str, default: bool| g.get(key).and_then(Value::as_bool).unwrap_or(default);
    let add_bos = flag("tokenizer.ggml.add_bos_token", kind == "llama");
    let add_eos = flag("tokenizer.ggml.add_eos_token", false);
    let text_of = |name: &str| named.iter().find(|(k, _)| *k == name).and_then(|(_, id)| id.map(|i| tokens[i]));
    let post = post_processor(add_bos.then(|| text_of("bos_token_id")).flatten().zip(named[0].1), add_eos.then(|| text_of("eos_token_id")).flatten().zip(named[1].1));
    let merges: Vec<Json> = merges.into_iter().map(|(a, b)| json!([a, b])).collect();
    let tokenizer = if byte_level {
        let pre = match g.get("tokenizer.ggml.pre").and_then(Value::as_str).and_then(split_regex) {
            Some(regex) => json!({ "type": "Sequence", "pretokenizers": [
                { "type": "Split", "pattern": { "Regex": regex }, "behavior": "Isolated", "invert": false },
                { "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false } ] }),
            None => json!({ "type": "ByteLevel", "add_prefix_space": flag("tokenizer.ggml.add_space_prefix", false), "trim_offsets": true, "use_regex": true }),
        };
        json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": added_tokens, "normalizer": null,
            "pre_tokenizer": pre, "post_processor": post,
            "decoder": { "type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true },
            "model": { "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "", "end_of_word_suffix": "",
                       "fuse_unk": false, "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": merges },
        })
    } else {
        let prefix = flag("tokenizer.ggml.add_space_prefix", true);
        let mut decoders = vec![json!({ "type": "Replace", "pattern": { "String": "\u{2581}" }, "content": " " }), json!({ "type": "ByteFallback" }), json!({ "type": "Fuse" })];
        if prefix {
            decoders.push(json!({ "type": "Strip", "content": " ", "start": 1, "stop": 0 }));
        }
        json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": added_tokens, "normalizer": null,
            "pre_tokenizer": { "type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": if prefix { "first" } else { "never" }, "split": false },
            "post_processor": post,
            "decoder": { "type": "Sequence", "decoders": decoders },
            "model": { "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null,
                       "fuse_unk": true, "byte_fallback": true, "ignore_merges": false, "vocab": vocab, "merges": merges },
        })
    };
    let mut config = Map::new();
    for (key, name) in [("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"), ("unk_token", "unknown_token_id"), ("pad_token", "padding_token_id")] {
        if let Some(t) = text_of(name) {
            config.insert(key.into(), json!(t));
        }
    }
    config.insert("add_bos_token".into(), json!(add_bos));
    config.insert("add_eos_token".into(), json!(add_eos));
    if let Some(t) = g.get("tokenizer.chat_template") {
        config.insert("chat_template".into(), json!(t.as_str().context("metadata 'tokenizer.chat_template' must be a string")?));
    }
    if let Some(ctx) = g.get("general.architecture").and_then(Value::as_str).and_then(|a| g.get(&format!("{a}.context_length"))).and_then(Value::as_i64) {
        config.insert("model_max_length".into(), json!(ctx));
    }
    Ok((tokenizer, Json::Object(config)))
}

/// transformers' post-processor: the bos token before each sequence and the eos token after
/// it, where the tokenizer adds them.
fn post_processor(bos: Option<(&str, usize)>, eos: Option<(&str, usize)>) -> Json {
    let mut single = Vec::new();
    let mut pair = Vec::new();
    let mut specials = Map::new();
    for (seq, type_id) in [("A", 0), ("B", 1)] {
        let mut part = Vec::new();
        if let Some((t, id)) = bos {
            part.push(json!({ "SpecialToken": { "id": t, "type_id": type_id } }));
            specials.insert(t.into(), json!({ "id": t, "ids": [id], "tokens": [t] }));
        }
        part.push(json!({ "Sequence": { "id": seq, "type_id": type_id } }));
        if let Some((t, id)) = eos {
            part.push(json!({ "SpecialToken": { "id": t, "type_id": type_id } }));
            specials.insert(t.into(), json!({ "id": t, "ids": [id], "tokens": [t] }));
        }
        if seq == "A" {
            single = part.clone();
        }
        pair.extend(part);
    }
    json!({ "type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials })
}

/// The pre-tokenizer type llama.cpp calls a split regex by.
fn pre_name(regex: &str) -> Option<&'static str> {
    [(LLAMA3_SPLIT, "llama-bpe"), (QWEN2_SPLIT, "qwen2"), (QWEN35_SPLIT, "qwen35"), (TEKKEN_SPLIT, "tekken"), (GPT4O_SPLIT, "gpt-4o")].iter().find(|(r, _)| *r == regex).map(|(_, n)| *n)
}

/// Whether a pre-tokenizer (or decoder) JSON is, or holds, one of `type`.
fn holds(v: &Json, ty: &str) -> bool {
    v.get("type").and_then(Json::as_str) == Some(ty)
        || ["pretokenizers", "decoders"].iter().any(|k| v.get(*k).and_then(Json::as_array).is_some_and(|a| a.iter().any(|x| holds(x, ty))))
}

/// The `tokenizer.*` metadata that describes `tok` (a BPE tokenizer: byte-level, written as
/// llama.cpp's `gpt2` model, or SentencePiece-style with byte fallback, written as `llama` with
/// scores that rank its merges), with its special ids, whether it adds BOS/EOS, and its chat
/// template.
pub fn metadata(tok: &crate::tokenizer::Tok) -> Result<Vec<(String, Value)>> {
    let json: Json = serde_json::from_str(&tok.inner.to_string(false).map_err(|e| anyhow::anyhow!("{e}"))?)?;
    let model = &json["model"];
    if model.get("type").and_then(Json::as_str) != Some("BPE") {
        bail!("only BPE tokenizers can be written to GGUF, not {}", model.get("type").and_then(Json::as_str).unwrap_or("this one"));
    }
    let pre = json.get("pre_tokenizer").cloned().unwrap_or(Json::Null);
    let byte_level = holds(&pre, "ByteLevel");
    let byte_fallback = model.get("byte_fallback").and_then(Json::as_bool).unwrap_or(false);
    if !byte_level && !byte_fallback {
        bail!("this tokenizer is neither byte-level BPE nor BPE with byte fallback, which are what GGUF vocabularies describe");
    }
    let size = tok.inner.get_vocab_size(true);
    let mut tokens: Vec<Option<String>> = vec![None; size];
    for (t, id) in tok.inner.get_vocab(true) {
        if let Some(slot) = tokens.get_mut(id as usize) {
            *slot = Some(t);
        }
    }
    let tokens: Vec<String> = tokens.into_iter().enumerate().map(|(i, t)| t.unwrap_or_else(|| format!("[PAD{i}]"))).collect();
    let merges: Vec<String> = model["merges"].as_array().into_iter().flatten().map(|m| match m {
        Json::String(s) => s.clone(),
        Json::Array(pair) => pair.iter().filter_map(Json::as_str).collect::<Vec<_>>().join(" "),
        _ => String::new(),
    }).collect();
    let added: HashMap<u32, bool> = json["added_tokens"].as_array().into_iter().flatten().filter_map(|a| Some((a.get("id")?.as_u64()? as u32, a.get("special")?.as_bool()?))).collect();
    let unk = tok.specials.unk.as_ref().map(|u| u.1);
    let types: Vec<Value> = tokens.iter().enumerate().map(|(i, t)| {
        let ty = match added.get(&(i as u32)) {
            Some(true) => CONTROL,
            Some(false) => USER_DEFINED,
            None if Some(i as u32) == unk => UNKNOWN,
            None if byte_fallback && t.len() == 6 && t.starts_with("<0x") && t.ends_with('>') => BYTE,
            None => NORMAL,
        };
        Value::I32(ty as i32)
    }).collect();
    let mut m: Vec<(String, Value)> = Vec::new();
    if byte_level {
        let name = match pre.get("pretokenizers").and_then(Json::as_array).and_then(|a| a.iter().find_map(|p| p.get("pattern")?.get("Regex")?.as_str())) {
            Some(regex) => pre_name(regex).with_context(|| format!("the tokenizer splits text with a regex llama.cpp does not know: {regex}"))?,
            None => "gpt2",
        };
        m.push(("tokenizer.ggml.model".into(), Value::Str("gpt2".into())));
        m.push(("tokenizer.ggml.pre".into(), Value::Str(name.into())));
    } else {
        m.push(("tokenizer.ggml.model".into(), Value::Str("llama".into())));
        let prefix = pre.get("prepend_scheme").and_then(Json::as_str).map(|s| s != "never").unwrap_or(true);
        m.push(("tokenizer.ggml.add_space_prefix".into(), Value::Bool(prefix)));
    }
    if !byte_level {
        // llama.cpp merges SentencePiece pieces by score: a token made by merge r scores −r.
        let rank: HashMap<String, usize> = merges.iter().enumerate().map(|(r, m)| (m.replace(' ', ""), r)).rev().collect();
        let scores = tokens.iter().map(|t| Value::F32(rank.get(t).map(|r| -(*r as f32)).unwrap_or(0.0))).collect();
        m.push(("tokenizer.ggml.scores".into(), Value::Array(scores)));
    }
    m.push(("tokenizer.ggml.tokens".into(), Value::Array(tokens.into_iter().map(Value::Str).collect())));
    m.push(("tokenizer.ggml.token_type".into(), Value::Array(types)));
    m.push(("tokenizer.ggml.merges".into(), Value::Array(merges.into_iter().map(Value::Str).collect())));
    for (key, special) in [("bos_token_id", &tok.specials.bos), ("eos_token_id", &tok.specials.eos), ("unknown_token_id", &tok.specials.unk), ("padding_token_id", &tok.specials.pad)] {
        if let Some((_, id)) = special {
            m.push((format!("tokenizer.ggml.{key}"), Value::U32(*id)));
        }
    }
    let (ids, _) = tok.encode("a", true)?;
    let (plain, _) = tok.encode("a", false)?;
    let adds_bos = tok.specials.bos.as_ref().is_some_and(|b| ids.first() == Some(&b.1) && plain.first() != Some(&b.1));
    let adds_eos = tok.specials.eos.as_ref().is_some_and(|e| ids.last() == Some(&e.1) && plain.last() != Some(&e.1));
    m.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(adds_bos)));
    m.push(("tokenizer.ggml.add_eos_token".into(), Value::Bool(adds_eos)));
    if let Ok(template) = tok.chat_template(None) {
        m.push(("tokenizer.chat_template".into(), Value::Str(template.to_string())));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_come_from_scores_as_transformers_makes_them() {
        let tokens = ["a", "b", "ab", "c", "abc", "bc"];
        let scores = [0.0, 0.0, -1.0, 0.0, -3.0, -2.0];
        let merges = generate_merges(&tokens, &scores);
        let got: Vec<String> = merges.iter().map(|(l, r)| format!("{l} {r}")).collect();
        assert_eq!(got, ["a b", "b c", "ab c", "a bc"]);
        // NaN scores (a hostile file) still sort, in some order, without a panic.
        let nan = [f64::NAN, 0.0, f64::NAN, -1.0, f64::NAN, 2.0];
        assert_eq!(generate_merges(&tokens, &nan).len(), 4);
    }
}
