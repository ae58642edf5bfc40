//! Attention masks as transformers builds them for causal models: a query at absolute position q
//! sees keys k ≤ q (and q − k < window for sliding-window layers) that are not padding.
//! Rows that would see nothing (padding queries under left padding) see every key instead, so
//! that attention yields numbers rather than NaN; their outputs are meaningless either way.

use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

/// How attention is restricted for a forward pass: by an explicit mask, or by causality alone
/// (which sdpa's `is_causal` expresses without a mask, on its fast kernels), or not at all (one
/// new token attending to everything before it).
pub enum Attend {
    Mask(Tensor),
    Causal,
    All,
}

impl Attend {
    /// What sdpa takes: (mask, is_causal).
    pub fn sdpa_args(&self) -> (Option<&Tensor>, bool) {
        match self {
            Attend::Mask(m) => (Some(m), false),
            Attend::Causal => (None, true),
            Attend::All => (None, false),
        }
    }

    /// The same restriction, sharing the mask tensor.
    pub fn shallow_clone(&self) -> Attend {
        match self {
            Attend::Mask(m) => Attend::Mask(m.shallow_clone()),
            Attend::Causal => Attend::Causal,
            Attend::All => Attend::All,
        }
    }
}

impl Attend {
    /// The restriction with `added` prefix positions before the keys (AdapterHub's prefix
    /// tuning), which every query of the batch's `t` sees.
    pub fn with_prefix(&self, added: i64, batch: i64, t: i64, device: Device) -> Result<Attend> {
        let mask = match self {
            Attend::All => return Ok(Attend::All),
            Attend::Mask(m) => m.shallow_clone(),
            Attend::Causal => causal(batch, t, 0, None, None, device)?,
        };
        let s = mask.size();
        let seen = Tensor::f_ones([s[0], s[1], s[2], added], (Kind::Bool, device))?;
        Ok(Attend::Mask(Tensor::f_cat(&[seen, mask], -1)?))
    }
}

/// The cheapest `Attend` that gives the same result as `causal(...)`: like transformers, the mask
/// is skipped when there is no padding and no window that cuts anything off. With `positions`
/// (the forward's position ids, no cache), a row whose positions start again (packed documents)
/// attends within each document only.
pub fn attend(batch: i64, t: i64, past: i64, padding: Option<&Tensor>, window: Option<i64>, positions: Option<&Tensor>, device: Device) -> Result<Attend> {
    if let Some(docs) = documents(positions, past, t)? {
        let same = docs.f_unsqueeze(-1)?.f_eq_tensor(&docs.f_unsqueeze(-2)?)?.f_unsqueeze(1)?;
        let allowed = causal(batch, t, past, padding, window, device)?.f_logical_and(&same)?;
        let empty_rows = allowed.f_any_dim(-1, true)?.f_logical_not()?;
        return Ok(Attend::Mask(allowed.f_logical_or(&empty_rows)?));
    }
    let no_padding = match padding {
        None => true,
        Some(p) if p.size() != [batch, past + t] => {
            bail!("attention_mask has shape {:?}, expected [{batch}, {}] (batch, past + new tokens)", p.size(), past + t)
        }
        Some(p) => bool::try_from(&p.f_ne(0)?.f_all()?)?,
    };
    let window_cuts = window.is_some_and(|w| past + t > w);
    if no_padding && !window_cuts {
        if past == 0 && t > 1 {
            return Ok(Attend::Causal);
        }
        if t == 1 {
            return Ok(Attend::All);
        }
    }
    Ok(Attend::Mask(causal(batch, t, past, padding, window, device)?))
}

/// Document numbers (B, T) of packed rows: a new document starts wherever a position is not the
/// one before it plus one (as transformers' `find_packed_sequence_indices`). None when no row
/// holds more than one, or with a cache (`past` > 0).
fn documents(positions: Option<&Tensor>, past: i64, t: i64) -> Result<Option<Tensor>> {
    let Some(p) = positions else { return Ok(None) };
    if past > 0 || t < 2 || p.dim() != 2 || p.size()[1] != t {
        return Ok(None);
    }
    let step = p.f_narrow(1, 1, t - 1)?.f_sub(&p.f_narrow(1, 0, t - 1)?)?;
    let starts = step.f_ne(1)?;
    if !bool::try_from(&starts.f_any()?)? {
        return Ok(None);
    }
    let starts = Tensor::f_cat(&[starts.f_narrow(1, 0, 1)?.f_zeros_like()?, starts], 1)?;
    Ok(Some(starts.f_cumsum(1, Kind::Int64)?))
}

/// A boolean mask (B, 1, T, S) for T new queries after `past` cached positions, S = past + T.
/// `padding` is the (B, S) attention mask (1 = token, 0 = padding), if any.
pub fn causal(batch: i64, t: i64, past: i64, padding: Option<&Tensor>, window: Option<i64>, device: Device) -> Result<Tensor> {
    let s = past + t;
    let q = Tensor::f_arange_start_step(past, s, 1, (Kind::Int64, device))?.f_view([t, 1])?;
    let k = Tensor::f_arange(s, (Kind::Int64, device))?.f_view([1, s])?;
    let mut allowed = k.f_le_tensor(&q)?;
    if let Some(w) = window {
        allowed = allowed.f_logical_and(&q.f_sub(&k)?.f_lt(w)?)?;
    }
    let mut allowed = allowed.f_view([1, 1, t, s])?.f_expand([batch, 1, t, s], false)?;
    if let Some(p) = padding {
        if p.size() != [batch, s] {
            bail!("attention_mask has shape {:?}, expected [{batch}, {s}] (batch, past + new tokens)", p.size());
        }
        let keep = p.f_ne(0)?.f_view([batch, 1, 1, s])?;
        allowed = allowed.f_logical_and(&keep)?;
    }
    let empty_rows = allowed.f_any_dim(-1, true)?.f_logical_not()?;
    Ok(allowed.f_logical_or(&empty_rows)?)
}

/// Positions for new tokens: `past..past+T` per row, or, with a padding mask, counted over real
/// tokens only (`cumsum(mask) − 1`, 1 at padding), as transformers' `generate` does.
pub fn positions(batch: i64, t: i64, past: i64, padding: Option<&Tensor>, device: Device) -> Result<Tensor> {
    match padding {
        None => Ok(Tensor::f_arange_start_step(past, past + t, 1, (Kind::Int64, device))?.f_view([1, t])?.f_expand([batch, t], false)?),
        Some(p) => {
            let counted = p.f_to_kind(Kind::Int64)?.f_cumsum(-1, Kind::Int64)?.f_sub_scalar(1)?;
            let counted = counted.f_masked_fill(&p.f_eq(0)?, 1)?;
            Ok(counted.f_narrow(-1, past, t)?)
        }
    }
}
