//! Tokenizers from Hugging Face files, on the `tokenizers` crate: encoding (with offsets), pairs,
//! truncation and padding as transformers' tokenizer call, decoding, the special ids named in
//! tokenizer_config.json, chat templates rendered with minijinja the way transformers renders
//! them with Jinja2, and training a byte-level BPE tokenizer.

pub mod batch;
pub mod chat;

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use tokenizers::Tokenizer;

/// The special tokens a tokenizer_config.json names, with their ids.
#[derive(Clone, Debug, Default)]
pub struct Specials {
    pub bos: Option<(String, u32)>,
    pub eos: Option<(String, u32)>,
    pub pad: Option<(String, u32)>,
    pub unk: Option<(String, u32)>,
}

pub struct Tok {
    pub inner: Tokenizer,
    pub specials: Specials,
    /// Chat templates by name: tokenizer_config.json's `chat_template` (one template, named
    /// "default", or Hugging Face's list of `{ name, template }`), or chat_template.jinja.
    pub chat_templates: Vec<(String, String)>,
    /// tokenizer_config.json's `model_max_length`, when it is a real length (transformers
    /// writes 1e30 for "none").
    pub model_max_length: Option<usize>,
    /// tokenizer_config.json's `padding_side` ("left" or "right"), the batches' default.
    pub padding_side: Option<String>,
}

/// Checks that a post-processor's templates (`TemplateProcessing`, also inside a `Sequence`)
/// name only special tokens it defines: the tokenizers library panics on encode otherwise.
fn check_templates(processor: Option<&Value>) -> Result<()> {
    let Some(p) = processor else { return Ok(()) };
    if let Some(list) = p.get("processors").and_then(|v| v.as_array()) {
        return list.iter().try_for_each(|inner| check_templates(Some(inner)));
    }
    // By shape, not by `type`: the tokenizers library reads a template processor whose type
    // name is misspelt too.
    if p.get("single").is_none() && p.get("pair").is_none() {
        return Ok(());
    }
    let defined = p.get("special_tokens").and_then(|v| v.as_object());
    for which in ["single", "pair"] {
        for piece in p.get(which).and_then(|v| v.as_array()).into_iter().flatten() {
            let Some(id) = piece.get("SpecialToken").and_then(|s| s.get("id")).and_then(|i| i.as_str()) else { continue };
            if !defined.is_some_and(|d| d.contains_key(id)) {
                bail!("the post-processor's {which} template uses the special token '{id}', which its special_tokens do not define");
            }
        }
    }
    Ok(())
}

/// A token in tokenizer_config.json: a string or `{ "content": ... }`.
fn token_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(|c| c.as_str()).map(str::to_string),
        _ => None,
    }
}

impl Tok {
    /// Loads a directory (tokenizer.json and, if present, tokenizer_config.json and
    /// chat_template.jinja, where transformers ≥ 4.43 saves the chat template), a
    /// tokenizer.json file, or a GGUF file (or a directory holding one and no tokenizer.json).
    pub fn load(path: &Path) -> Result<Tok> {
        if let Some(file) = crate::gguf::load::gguf_file(path)?.filter(|_| !path.join("tokenizer.json").exists()) {
            return Tok::from_gguf(&file);
        }
        let (file, config_path) = if path.is_dir() {
            (path.join("tokenizer.json"), Some(path.join("tokenizer_config.json")))
        } else {
            (path.to_path_buf(), path.parent().map(|p| p.join("tokenizer_config.json")))
        };
        if !file.exists() {
            bail!("{} not found", file.display());
        }
        let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
        let config: Option<Value> = match config_path.filter(|p| p.exists()) {
            Some(p) => {
                let text = std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
                Some(serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", p.display()))?)
            }
            None => None,
        };
        let mut tok = Tok::from_json(&text, config.as_ref()).with_context(|| format!("cannot load {}", file.display()))?;
        let jinja = if path.is_dir() { path.join("chat_template.jinja") } else { path.with_file_name("chat_template.jinja") };
        if jinja.exists() {
            let template = std::fs::read_to_string(&jinja).with_context(|| format!("cannot read {}", jinja.display()))?;
            tok.chat_templates.retain(|(name, _)| name != "default");
            tok.chat_templates.insert(0, ("default".to_string(), template));
        }
        Ok(tok)
    }

    /// The tokenizer, special tokens and chat template of a GGUF file's metadata.
    pub fn from_gguf(file: &Path) -> Result<Tok> {
        let g = crate::gguf::Gguf::open(file)?;
        let (json, config) = crate::gguf::tokenizer::tokenizer_json(&g).with_context(|| format!("reading the tokenizer of {}", file.display()))?;
        Tok::from_json(&json.to_string(), Some(&config)).with_context(|| format!("building the tokenizer of {}", file.display()))
    }

    /// A tokenizer from tokenizer.json's text and tokenizer_config.json's contents (what `load`
    /// reads, and what the coverage-guided fuzz target feeds arbitrary text to).
    pub fn from_json(text: &str, config: Option<&Value>) -> Result<Tok> {
        let json: Value = serde_json::from_str(text).context("tokenizer.json is not valid JSON")?;
        check_templates(json.get("post_processor"))?;
        let mut inner: Tokenizer = text.parse().map_err(|e: tokenizers::Error| anyhow!("{}", crate::io::plain_words(&e.to_string())))?;
        // As transformers does: padding and truncation stored in tokenizer.json apply only when
        // a call asks for them (encode_batch does its own).
        inner.with_padding(None);
        inner.with_truncation(None).map_err(|e| anyhow!("{e}"))?;
        Ok(Tok::with_config(inner, config))
    }

    pub fn with_config(inner: Tokenizer, config: Option<&Value>) -> Tok {
        let lookup = |key: &str| {
            let text = token_text(config.and_then(|c| c.get(key)))?;
            let id = inner.token_to_id(&text)?;
            Some((text, id))
        };
        let specials = Specials { bos: lookup("bos_token"), eos: lookup("eos_token"), pad: lookup("pad_token"), unk: lookup("unk_token") };
        let chat_templates = match config.and_then(|c| c.get("chat_template")) {
            Some(Value::String(t)) => vec![("default".to_string(), t.clone())],
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(|entry| Some((entry.get("name")?.as_str()?.to_string(), entry.get("template")?.as_str()?.to_string())))
                .collect(),
            _ => Vec::new(),
        };
        let model_max_length = config.and_then(|c| c.get("model_max_length")).and_then(|v| v.as_f64()).filter(|m| *m > 0.0 && *m < 1e12).map(|m| m as usize);
        let padding_side = config.and_then(|c| c.get("padding_side")).and_then(|v| v.as_str()).map(str::to_string);
        Tok { inner, specials, chat_templates, model_max_length, padding_side }
    }

    /// Writes tokenizer.json and a tokenizer_config.json naming the special tokens, the chat
    /// template(s), model_max_length and padding_side, which transformers loads.
    pub fn save_pretrained(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let json = self.inner.to_string(true).map_err(|e| anyhow!("{e}"))?;
        crate::io::write_atomic(&dir.join("tokenizer.json"), json.as_bytes())?;
        let mut config = serde_json::Map::new();
        config.insert("tokenizer_class".into(), Value::String("PreTrainedTokenizerFast".into()));
        for (key, special) in [("bos_token", &self.specials.bos), ("eos_token", &self.specials.eos), ("pad_token", &self.specials.pad), ("unk_token", &self.specials.unk)] {
            if let Some((text, _)) = special {
                config.insert(key.into(), Value::String(text.clone()));
            }
        }
        match self.chat_templates.as_slice() {
            [] => {}
            [(_, t)] => {
                config.insert("chat_template".into(), Value::String(t.clone()));
            }
            many => {
                let list = many.iter().map(|(n, t)| serde_json::json!({ "name": n, "template": t })).collect();
                config.insert("chat_template".into(), Value::Array(list));
            }
        }
        if let Some(m) = self.model_max_length {
            config.insert("model_max_length".into(), m.into());
        }
        if let Some(side) = &self.padding_side {
            config.insert("padding_side".into(), Value::String(side.clone()));
        }
        crate::io::write_atomic(&dir.join("tokenizer_config.json"), serde_json::to_string_pretty(&Value::Object(config))?.as_bytes())
    }

    /// The chat template called `name`, or the default one (transformers' choice: "default", or
    /// the only one there is).
    pub fn chat_template(&self, name: Option<&str>) -> Result<&str> {
        let names = || self.chat_templates.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ");
        if self.chat_templates.is_empty() {
            bail!("this tokenizer has no chat_template (tokenizer_config.json or chat_template.jinja)");
        }
        let wanted = match name {
            Some(n) => n,
            None if self.chat_templates.len() == 1 => self.chat_templates[0].0.as_str(),
            None => "default",
        };
        match self.chat_templates.iter().find(|(n, _)| n == wanted) {
            Some((_, t)) => Ok(t),
            None if name.is_none() => bail!("this tokenizer has several chat templates ({}) and none named 'default': choose one with {{ chat_template = name }}", names()),
            None => bail!("this tokenizer has no chat template named '{wanted}' (it has: {})", names()),
        }
    }

    /// Ids (and (start, end) character offsets) of `text`.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<(Vec<u32>, Vec<(usize, usize)>)> {
        let enc = self.encode_input(text, None, add_special_tokens, None)?;
        Ok((enc.get_ids().to_vec(), enc.get_offsets().to_vec()))
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner.decode(ids, skip_special_tokens).map_err(|e| anyhow!("{e}"))
    }

    /// `decode` for ids as scripts and tensors hold them (int64); an id out of range is an error.
    pub fn decode_ids(&self, ids: &[i64], skip_special_tokens: bool) -> Result<String> {
        let ids: Vec<u32> = ids.iter().map(|i| u32::try_from(*i).map_err(|_| anyhow!("token id {i} is out of range"))).collect::<Result<_>>()?;
        self.decode(&ids, skip_special_tokens)
    }

    /// The id padding uses by default: the pad token, else EOS, else 0.
    pub fn default_pad_id(&self) -> i64 {
        self.specials.pad.as_ref().or(self.specials.eos.as_ref()).map(|p| p.1 as i64).unwrap_or(0)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
}

/// Trains a byte-level BPE tokenizer (GPT-2 style pre-tokenisation and decoding) on text files.
pub fn train_bpe(files: &[String], vocab_size: usize, special_tokens: &[String], min_frequency: u64) -> Result<Tok> {
    use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::{AddedToken, TokenizerBuilder};

    for f in files {
        if !Path::new(f).exists() {
            bail!("training file {f} not found");
        }
    }
    let specials: Vec<AddedToken> = special_tokens.iter().map(|s| AddedToken::from(s.clone(), true)).collect();
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(min_frequency)
        .special_tokens(specials)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .show_progress(false)
        .build();
    let mut tokenizer = TokenizerBuilder::new()
        .with_model(BPE::default())
        .with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)))
        .with_decoder(Some(ByteLevel::default()))
        .with_post_processor(Some(ByteLevel::default().trim_offsets(false)))
        .with_normalizer(None::<tokenizers::normalizers::Sequence>)
        .build()
        .map_err(|e| anyhow!("{e}"))?;
    tokenizer.train_from_files(&mut trainer, files.to_vec()).map_err(|e| anyhow!("training failed: {e}"))?;
    let tokenizer: Tokenizer = tokenizer.into();
    Ok(Tok::with_config(tokenizer, None))
}
