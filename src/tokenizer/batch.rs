//! A batch of texts as tensors: each encoded, cut to `max_length` if given, and padded on the
//! right (training) or the left (generation) to the longest, with an attention mask
//! (1 = token, 0 = padding).

use anyhow::{bail, Result};
use serde::Deserialize;
use tch::Tensor;

use super::Tok;

/// How `encode_batch` encodes and pads; unknown keys are errors.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct BatchOptions {
    /// Add the tokenizer's special tokens (default true).
    pub add_special_tokens: Option<bool>,
    /// Pad to the longest sequence (default true).
    pub padding: Option<bool>,
    /// "right" (default) or "left" (for generation).
    pub padding_side: Option<String>,
    /// Cut sequences longer than this.
    pub max_length: Option<usize>,
    /// The id padding uses (default: pad token, else EOS, else 0).
    pub pad_id: Option<i64>,
}

/// `input_ids` and `attention_mask`, both (batch, longest) int64.
pub struct Batch {
    pub input_ids: Tensor,
    pub attention_mask: Tensor,
}

impl Tok {
    pub fn encode_batch(&self, texts: &[String], o: &BatchOptions) -> Result<Batch> {
        let left = match o.padding_side.as_deref().unwrap_or("right") {
            "right" => false,
            "left" => true,
            other => bail!("padding_side must be 'left' or 'right', got '{other}'"),
        };
        let mut rows = Vec::with_capacity(texts.len());
        for text in texts {
            let (mut ids, _) = self.encode(text, o.add_special_tokens.unwrap_or(true))?;
            if let Some(max) = o.max_length {
                ids.truncate(max);
            }
            rows.push(ids);
        }
        let width = rows.iter().map(Vec::len).max().unwrap_or(0);
        if !o.padding.unwrap_or(true) && rows.iter().any(|r| r.len() != width) {
            bail!("sequences differ in length; pass padding = true");
        }
        let pad = o.pad_id.unwrap_or_else(|| self.default_pad_id());
        let mut ids = Vec::with_capacity(rows.len() * width);
        let mut mask = Vec::with_capacity(rows.len() * width);
        for r in &rows {
            let fill = width - r.len();
            let tokens = r.iter().map(|i| *i as i64);
            if left {
                ids.extend(std::iter::repeat_n(pad, fill).chain(tokens));
                mask.extend(std::iter::repeat_n(0i64, fill).chain(std::iter::repeat_n(1, r.len())));
            } else {
                ids.extend(tokens.chain(std::iter::repeat_n(pad, fill)));
                mask.extend(std::iter::repeat_n(1i64, r.len()).chain(std::iter::repeat_n(0, fill)));
            }
        }
        let shape = [rows.len() as i64, width as i64];
        Ok(Batch { input_ids: Tensor::f_from_slice(&ids)?.f_view(shape)?, attention_mask: Tensor::f_from_slice(&mask)?.f_view(shape)? })
    }
}
