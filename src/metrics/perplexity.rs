//! Token-weighted perplexity over a dataset: exp of the summed negative log-likelihood over the
//! summed tokens, from each batch's mean loss (what a causal LM's `loss` is) and the number of
//! tokens it averaged over — not the mean of the batches' perplexities.

use anyhow::{bail, Result};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Perplexity {
    nll: f64,
    tokens: f64,
}

impl Perplexity {
    /// Adds a batch: its mean loss per token (nats) and how many tokens it covers.
    pub fn add(&mut self, mean_loss: f64, tokens: f64) -> Result<()> {
        if !mean_loss.is_finite() || mean_loss < 0.0 {
            bail!("a loss must be a finite non-negative number, got {mean_loss}");
        }
        if !(tokens >= 0.0 && tokens.is_finite()) {
            bail!("a token count must be a non-negative number, got {tokens}");
        }
        self.nll += mean_loss * tokens;
        self.tokens += tokens;
        Ok(())
    }

    pub fn compute(&self) -> Result<f64> {
        if self.tokens == 0.0 {
            bail!("no tokens added");
        }
        Ok((self.nll / self.tokens).exp())
    }

    pub fn tokens(&self) -> f64 {
        self.tokens
    }
}

/// The perplexity of batches given as their mean losses and token counts.
pub fn perplexity(mean_losses: &[f64], tokens: &[f64]) -> Result<f64> {
    if mean_losses.len() != tokens.len() {
        bail!("{} losses for {} token counts", mean_losses.len(), tokens.len());
    }
    let mut p = Perplexity::default();
    for (&l, &t) in mean_losses.iter().zip(tokens) {
        p.add(l, t)?;
    }
    p.compute()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_batches_by_their_tokens() {
        // Two batches: 10 tokens at loss 1, 30 tokens at loss 2 → exp(70 / 40).
        assert!((perplexity(&[1.0, 2.0], &[10.0, 30.0]).unwrap() - (70.0f64 / 40.0).exp()).abs() < 1e-12);
        assert!(perplexity(&[1.0], &[0.0]).is_err());
        assert!(perplexity(&[f64::NAN], &[1.0]).is_err());
    }
}
