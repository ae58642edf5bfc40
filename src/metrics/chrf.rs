//! chrF and chrF++ as sacrebleu 2.x computes them (`corpus_chrf`, `sentence_chrf`): character
//! n-grams up to 6 (whitespace removed unless asked), word n-grams up to `word_order` (2 for
//! chrF++) over words with a leading or trailing ASCII punctuation mark split off, β = 2, the
//! reference with the best segment score where there are several, and the average precision and
//! recall over the orders present (sacrebleu's default; `eps_smoothing` as chrF++.py instead).

use std::collections::HashMap;

use anyhow::{bail, Result};

use super::bleu::check_streams;
use super::text::{lower, split_whitespace};

#[derive(Clone, Copy, Debug)]
pub struct ChrfOptions {
    pub char_order: usize,
    pub word_order: usize,
    pub beta: f64,
    pub lowercase: bool,
    pub whitespace: bool,
    pub eps_smoothing: bool,
}

impl Default for ChrfOptions {
    fn default() -> Self {
        ChrfOptions { char_order: 6, word_order: 0, beta: 2.0, lowercase: false, whitespace: false, eps_smoothing: false }
    }
}

impl ChrfOptions {
    fn order(&self) -> usize {
        self.char_order + self.word_order
    }

    pub fn check(&self) -> Result<()> {
        if self.char_order == 0 && self.word_order == 0 {
            bail!("char_order and word_order cannot both be 0");
        }
        if self.char_order > 100 || self.word_order > 100 {
            bail!("char_order and word_order must be at most 100");
        }
        if !(self.beta > 0.0 && self.beta.is_finite()) {
            bail!("beta must be a positive number, got {}", self.beta);
        }
        Ok(())
    }
}

const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// Words with one leading or trailing punctuation mark split off (chrF++'s word n-grams).
fn words(sent: &str) -> Vec<String> {
    let mut out = Vec::new();
    for w in split_whitespace(sent) {
        let chars: Vec<char> = w.chars().collect();
        if chars.len() == 1 {
            out.push(w.to_string());
        } else if PUNCTUATION.contains(chars[chars.len() - 1]) {
            out.push(chars[..chars.len() - 1].iter().collect());
            out.push(chars[chars.len() - 1].to_string());
        } else if PUNCTUATION.contains(chars[0]) {
            out.push(chars[0].to_string());
            out.push(chars[1..].iter().collect());
        } else {
            out.push(w.to_string());
        }
    }
    out
}

/// The n-gram counts of each order: characters 1..=char_order, then words 1..=word_order.
fn all_ngrams(sent: &str, o: &ChrfOptions) -> Vec<HashMap<String, i64>> {
    let line: String = if o.whitespace { sent.to_string() } else { split_whitespace(sent).concat() };
    let chars: Vec<char> = line.chars().collect();
    let mut out = Vec::new();
    for n in 1..=o.char_order {
        let mut c = HashMap::new();
        for w in chars.windows(n) {
            *c.entry(w.iter().collect::<String>()).or_insert(0) += 1;
        }
        out.push(c);
    }
    if o.word_order > 0 {
        let ws = words(sent);
        for n in 1..=o.word_order {
            let mut c = HashMap::new();
            for w in ws.windows(n) {
                *c.entry(w.join(" ")).or_insert(0) += 1;
            }
            out.push(c);
        }
    }
    out
}

/// [hypothesis n-grams, reference n-grams, matches] of one order.
fn match_stats(hyp: &HashMap<String, i64>, reference: &HashMap<String, i64>) -> [i64; 3] {
    let (mut matches, mut hyp_count) = (0, 0);
    for (g, &c) in hyp {
        hyp_count += c;
        if let Some(&r) = reference.get(g) {
            matches += c.min(r);
        }
    }
    [if reference.is_empty() { 0 } else { hyp_count }, reference.values().sum(), matches]
}

/// The score (0 to 100) of statistics laid out [hyp, ref, match] per order.
pub fn f_score(stats: &[i64], o: &ChrfOptions) -> f64 {
    let eps = 1e-16;
    let factor = o.beta * o.beta;
    let (mut score, mut effective, mut avg_prec, mut avg_rec) = (0.0, 0usize, 0.0, 0.0);
    for s in stats.chunks(3).take(o.order()) {
        let (n_hyp, n_ref, n_match) = (s[0] as f64, s[1] as f64, s[2] as f64);
        let prec = if n_hyp > 0.0 { n_match / n_hyp } else { eps };
        let rec = if n_ref > 0.0 { n_match / n_ref } else { eps };
        let denom = factor * prec + rec;
        score += if denom > 0.0 { (1.0 + factor) * prec * rec / denom } else { eps };
        if n_hyp > 0.0 && n_ref > 0.0 {
            avg_prec += prec;
            avg_rec += rec;
            effective += 1;
        }
    }
    if o.eps_smoothing {
        return 100.0 * score / o.order() as f64;
    }
    if effective == 0 {
        return 0.0;
    }
    avg_prec /= effective as f64;
    avg_rec /= effective as f64;
    if avg_prec + avg_rec == 0.0 {
        return 0.0;
    }
    100.0 * (1.0 + factor) * avg_prec * avg_rec / (factor * avg_prec + avg_rec)
}

/// The statistics of one segment: those of its best-scoring reference.
pub fn segment_stats(hyp: &str, refs: &[&str], o: &ChrfOptions) -> Vec<i64> {
    let prep = |s: &str| if o.lowercase { lower(s) } else { s.to_string() };
    let hyp_ngrams = all_ngrams(&prep(hyp), o);
    let mut best: (f64, Vec<i64>) = (-1.0, Vec::new());
    for r in refs {
        let ref_ngrams = all_ngrams(&prep(r), o);
        let stats: Vec<i64> = hyp_ngrams.iter().zip(&ref_ngrams).flat_map(|(h, r)| match_stats(h, r)).collect();
        let f = f_score(&stats, o);
        if f > best.0 {
            best = (f, stats);
        }
    }
    best.1
}

/// A corpus's statistics: the sum of its segments'.
#[derive(Clone, Debug, PartialEq)]
pub struct ChrfStats(Vec<i64>);

impl ChrfStats {
    pub fn new(o: &ChrfOptions) -> Result<ChrfStats> {
        o.check()?;
        Ok(ChrfStats(vec![0; 3 * o.order()]))
    }

    /// Adds hypotheses and their reference streams.
    pub fn add_corpus(&mut self, hyps: &[String], refs: &[Vec<String>], o: &ChrfOptions) -> Result<()> {
        check_streams(hyps.len(), refs)?;
        for (i, h) in hyps.iter().enumerate() {
            let segment: Vec<&str> = refs.iter().map(|s| s[i].as_str()).collect();
            for (t, s) in self.0.iter_mut().zip(segment_stats(h, &segment, o)) {
                *t += s;
            }
        }
        Ok(())
    }

    pub fn score(&self, o: &ChrfOptions) -> f64 {
        f_score(&self.0, o)
    }
}

/// Corpus chrF of `hyps` against reference streams, as `sacrebleu.corpus_chrf`.
pub fn corpus_chrf(hyps: &[String], refs: &[Vec<String>], o: &ChrfOptions) -> Result<f64> {
    let mut stats = ChrfStats::new(o)?;
    stats.add_corpus(hyps, refs, o)?;
    Ok(stats.score(o))
}

/// Sentence chrF, as `sacrebleu.sentence_chrf`.
pub fn sentence_chrf(hyp: &str, refs: &[String], o: &ChrfOptions) -> Result<f64> {
    o.check()?;
    if refs.is_empty() {
        bail!("no references");
    }
    Ok(f_score(&segment_stats(hyp, &refs.iter().map(String::as_str).collect::<Vec<_>>(), o), o))
}
