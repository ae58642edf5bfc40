//! What a causal model's forward reads its tokens from: ids (B, T), or embeddings (B, T, hidden)
//! given directly (`inputs_embeds`, the way in for prompt tuning).

use anyhow::{bail, Result};
use tch::{Device, Tensor};

pub enum Tokens<'a> {
    Ids(&'a Tensor),
    Embeds(&'a Tensor),
}

impl Tokens<'_> {
    /// (batch, length), checking the rank.
    pub fn batch_and_length(&self) -> Result<(i64, i64)> {
        let size = match self {
            Tokens::Ids(t) => {
                let s = t.size();
                if s.len() != 2 {
                    bail!("input_ids must be (batch, seq), got shape {s:?}");
                }
                s
            }
            Tokens::Embeds(t) => {
                let s = t.size();
                if s.len() != 3 {
                    bail!("inputs_embeds must be (batch, seq, hidden), got shape {s:?}");
                }
                s
            }
        };
        Ok((size[0], size[1]))
    }

    pub fn device(&self) -> Device {
        match self {
            Tokens::Ids(t) | Tokens::Embeds(t) => t.device(),
        }
    }
}
