//! Encoding as transformers' tokenizer `__call__` does it: texts or (text, pair) inputs,
//! truncation (`true`/"longest_first", "only_first", "only_second") to `max_length` that keeps
//! room for the special tokens, overflowing windows with a `stride`, and padding ("longest" or
//! "max_length", right or left, to a multiple) with an attention mask and token type ids.
//!
//! Where this differs from transformers it says so: a batch is padded to its longest sequence
//! unless asked otherwise (a tensor must be rectangular), a tokenizer without a pad token pads
//! with EOS (else 0) instead of refusing, and `max_length` with padding to the longest and no
//! truncation is an error rather than a warning that it is ignored.

use anyhow::{anyhow, bail, Result};
use serde::Deserialize;
use tch::Tensor;
use tokenizers::utils::truncation::{truncate_encodings, TruncationDirection, TruncationParams, TruncationStrategy};
use tokenizers::{EncodeInput, Encoding, PostProcessor};

use super::Tok;

/// `true`/`false` or a strategy name, as transformers takes `truncation` and `padding`.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum Choice {
    Flag(bool),
    Name(String),
}

/// How `encode_batch` (and, for truncation, `encode`) encodes; unknown keys are errors.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct BatchOptions {
    /// Add the tokenizer's special tokens ([CLS]/[SEP], BOS, …; default true).
    pub add_special_tokens: Option<bool>,
    /// true/"longest_first", "only_first", "only_second", false/"do_not_truncate" (default: none,
    /// or "longest_first" when only `max_length` is given, as transformers).
    pub truncation: Option<Choice>,
    /// The length truncation cuts to and "max_length" padding pads to (special tokens included;
    /// default the tokenizer's model_max_length).
    pub max_length: Option<usize>,
    /// Tokens repeated between overflowing windows (with return_overflowing_tokens).
    pub stride: Option<usize>,
    /// Return what truncation cut off as further rows (and overflow_to_sample_mapping).
    pub return_overflowing_tokens: Option<bool>,
    /// true/"longest" (default), "max_length", false/"do_not_pad".
    pub padding: Option<Choice>,
    /// "right" or "left" (for generation); default tokenizer_config.json's, else "right".
    pub padding_side: Option<String>,
    /// Round the padded length up to a multiple of this.
    pub pad_to_multiple_of: Option<usize>,
    /// The id padding uses (default: pad token, else EOS, else 0).
    pub pad_id: Option<i64>,
}

/// Tensors (rows, width) of input_ids, attention_mask and token_type_ids, int64; with
/// overflowing windows, the input each row came from.
pub struct Batch {
    pub input_ids: Tensor,
    pub attention_mask: Tensor,
    pub token_type_ids: Tensor,
    pub overflow_to_sample_mapping: Option<Tensor>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Padding {
    None,
    Longest,
    MaxLength,
}

/// How `encode` encodes one input; unknown keys are errors.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct EncodeOptions {
    /// Add the tokenizer's special tokens (default true).
    pub add_special_tokens: Option<bool>,
    /// Also return the (start, end) character offsets of each token.
    pub offsets: Option<bool>,
    /// As for `encode_batch`.
    pub truncation: Option<Choice>,
    /// As for `encode_batch`.
    pub max_length: Option<usize>,
}

/// The truncation asked for, if any.
pub struct Truncation {
    params: TruncationParams,
}

impl EncodeOptions {
    pub fn truncation(&self, tok: &Tok) -> Result<Option<Truncation>> {
        truncation(tok, &self.truncation, self.max_length, false, None, false)
    }
}

/// Resolves truncation as transformers does: `max_length` alone (no padding asked) truncates
/// longest-first; `truncation` without a length uses the tokenizer's model_max_length.
fn truncation(tok: &Tok, choice: &Option<Choice>, max_length: Option<usize>, padding_given: bool, stride: Option<usize>, overflowing: bool) -> Result<Option<Truncation>> {
    let strategy = match choice {
        None if max_length.is_some() && !padding_given => Some(TruncationStrategy::LongestFirst),
        None | Some(Choice::Flag(false)) => None,
        Some(Choice::Flag(true)) => Some(TruncationStrategy::LongestFirst),
        Some(Choice::Name(n)) => match n.as_str() {
            "longest_first" => Some(TruncationStrategy::LongestFirst),
            "only_first" => Some(TruncationStrategy::OnlyFirst),
            "only_second" => Some(TruncationStrategy::OnlySecond),
            "do_not_truncate" => None,
            other => bail!("truncation must be true, false, 'longest_first', 'only_first', 'only_second' or 'do_not_truncate', got '{other}'"),
        },
    };
    let Some(strategy) = strategy else {
        if stride.is_some() || overflowing {
            bail!("stride and return_overflowing_tokens need truncation (truncation = true and max_length)");
        }
        return Ok(None);
    };
    let Some(max_length) = max_length.or(tok.model_max_length) else {
        // As transformers: without a length to cut to, truncation does nothing.
        return Ok(None);
    };
    Ok(Some(Truncation { params: TruncationParams { direction: TruncationDirection::Right, max_length, strategy, stride: stride.unwrap_or(0) } }))
}

impl BatchOptions {
    fn truncation(&self, tok: &Tok) -> Result<Option<Truncation>> {
        let padding_given = matches!(&self.padding, Some(Choice::Flag(true)) | Some(Choice::Name(_)));
        truncation(tok, &self.truncation, self.max_length, padding_given, self.stride, self.return_overflowing_tokens == Some(true))
    }

    fn padding(&self) -> Result<Padding> {
        Ok(match &self.padding {
            None | Some(Choice::Flag(true)) => Padding::Longest,
            Some(Choice::Flag(false)) => Padding::None,
            Some(Choice::Name(n)) => match n.as_str() {
                "longest" => Padding::Longest,
                "max_length" => Padding::MaxLength,
                "do_not_pad" => Padding::None,
                other => bail!("padding must be true, false, 'longest', 'max_length' or 'do_not_pad', got '{other}'"),
            },
        })
    }
}

impl Tok {
    /// One input (a text, or a text and its pair) as an encoding, truncated if asked (with what
    /// was cut in its overflowing encodings).
    pub fn encode_input(&self, text: &str, pair: Option<&str>, add_special_tokens: bool, truncation: Option<&Truncation>) -> Result<Encoding> {
        let err = |e| anyhow!("{e}");
        let Some(t) = truncation else {
            let input: EncodeInput = match pair {
                Some(b) => (text, b).into(),
                None => text.into(),
            };
            return self.inner.encode(input, add_special_tokens).map_err(err);
        };
        // As the tokenizer's own pipeline: each sequence on its own, truncated with room left
        // for the special tokens, then the post-processor adds them.
        let a = self.inner.encode(text, false).map_err(err)?;
        let b = pair.map(|b| self.inner.encode(b, false).map_err(err)).transpose()?;
        let processor = self.inner.get_post_processor();
        let added = if add_special_tokens { processor.map(|p| p.added_tokens(b.is_some())).unwrap_or(0) } else { 0 };
        if t.params.max_length <= added {
            bail!("max_length {} leaves no room for text: the special tokens take {added}", t.params.max_length);
        }
        let params = TruncationParams { max_length: t.params.max_length - added, ..t.params.clone() };
        let (a, b) = truncate_encodings(a, b, &params).map_err(err)?;
        match processor {
            Some(p) => p.process(a, b, add_special_tokens).map_err(err),
            None => {
                let mut parts = vec![a];
                parts.extend(b);
                let mut merged = <dyn PostProcessor>::default_process(parts, add_special_tokens).map_err(err)?;
                merged.pop().ok_or_else(|| anyhow!("the tokenizer produced no encoding"))
            }
        }
    }

    /// Encodes `texts` (with `pairs`, one per text, if given) into padded tensors.
    pub fn encode_batch(&self, texts: &[String], pairs: Option<&[String]>, o: &BatchOptions) -> Result<Batch> {
        if let Some(p) = pairs {
            if p.len() != texts.len() {
                bail!("{} texts and {} pairs: give one pair per text", texts.len(), p.len());
            }
        }
        let left = match o.padding_side.as_deref().or(self.padding_side.as_deref()).unwrap_or("right") {
            "right" => false,
            "left" => true,
            other => bail!("padding_side must be 'left' or 'right', got '{other}'"),
        };
        let padding = o.padding()?;
        let truncation = o.truncation(self)?;
        if padding == Padding::Longest && o.max_length.is_some() && truncation.is_none() {
            bail!("max_length with padding to the longest and no truncation does nothing: pass truncation = true, or padding = 'max_length'");
        }
        let overflowing = o.return_overflowing_tokens.unwrap_or(false);
        let mut rows: Vec<Encoding> = Vec::new();
        let mut sample = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            let mut enc = self.encode_input(text, pairs.map(|p| p[i].as_str()), o.add_special_tokens.unwrap_or(true), truncation.as_ref())?;
            let rest = enc.take_overflowing();
            rows.push(enc);
            sample.push(i as i64);
            if overflowing {
                for extra in rest {
                    rows.push(extra);
                    sample.push(i as i64);
                }
            }
        }
        let longest = rows.iter().map(Encoding::len).max().unwrap_or(0);
        let mut width = match padding {
            Padding::None | Padding::Longest => longest,
            Padding::MaxLength => match o.max_length.or(self.model_max_length) {
                Some(m) => m.max(longest),
                None => bail!("padding = 'max_length' needs max_length (this tokenizer has no model_max_length)"),
            },
        };
        if let (Some(m), true) = (o.pad_to_multiple_of, padding != Padding::None) {
            if m == 0 {
                bail!("pad_to_multiple_of must be positive");
            }
            width = width.div_ceil(m) * m;
        }
        if padding == Padding::None && rows.iter().any(|r| r.len() != width) {
            bail!("sequences differ in length and padding is off; pass padding = true (a batch of tensors must be rectangular)");
        }
        let pad = o.pad_id.unwrap_or_else(|| self.default_pad_id());
        let n = rows.len() * width;
        let (mut ids, mut mask, mut types) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        for r in &rows {
            let fill = width - r.len();
            let (row_ids, row_types) = (r.get_ids().iter().map(|i| *i as i64), r.get_type_ids().iter().map(|i| *i as i64));
            if left {
                ids.extend(std::iter::repeat_n(pad, fill).chain(row_ids));
                types.extend(std::iter::repeat_n(0, fill).chain(row_types));
                mask.extend(std::iter::repeat_n(0i64, fill).chain(std::iter::repeat_n(1, r.len())));
            } else {
                ids.extend(row_ids.chain(std::iter::repeat_n(pad, fill)));
                types.extend(row_types.chain(std::iter::repeat_n(0, fill)));
                mask.extend(std::iter::repeat_n(1i64, r.len()).chain(std::iter::repeat_n(0, fill)));
            }
        }
        let shape = [rows.len() as i64, width as i64];
        Ok(Batch {
            input_ids: Tensor::f_from_slice(&ids)?.f_view(shape)?,
            attention_mask: Tensor::f_from_slice(&mask)?.f_view(shape)?,
            token_type_ids: Tensor::f_from_slice(&types)?.f_view(shape)?,
            overflow_to_sample_mapping: if overflowing { Some(Tensor::f_from_slice(&sample)?) } else { None },
        })
    }
}
