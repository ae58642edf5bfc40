//! ROUGE as Google's rouge-score computes it (`RougeScorer(types, use_stemmer)`): text lowercased,
//! every run of characters other than a-z and 0-9 a separator, tokens longer than 3 letters
//! Porter-stemmed (NLTK's) if asked; ROUGE-N over n-gram counts, ROUGE-L over the longest
//! common subsequence, ROUGE-Lsum over the union LCS of newline-separated sentences; with several
//! references, the one with the best F-measure for each type.

use std::collections::HashMap;

use anyhow::{bail, Result};

use super::porter;

/// Precision, recall and F-measure.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Score {
    pub precision: f64,
    pub recall: f64,
    pub fmeasure: f64,
}

impl Score {
    fn add(&mut self, other: Score) {
        self.precision += other.precision;
        self.recall += other.recall;
        self.fmeasure += other.fmeasure;
    }
}

fn score(precision: f64, recall: f64) -> Score {
    let fmeasure = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
    Score { precision, recall, fmeasure }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RougeType {
    N(usize),
    L,
    Lsum,
}

impl RougeType {
    pub fn parse(name: &str) -> Result<RougeType> {
        Ok(match name {
            "rougeL" => RougeType::L,
            "rougeLsum" => RougeType::Lsum,
            _ => match name.strip_prefix("rouge").and_then(|n| n.parse::<usize>().ok()).filter(|n| (1..=9).contains(n) && name.len() == 6) {
                Some(n) => RougeType::N(n),
                None => bail!("rouge type '{name}' is not one of rouge1 … rouge9, rougeL, rougeLsum"),
            },
        })
    }
}

/// rouge-score's tokenizer.
pub fn tokenize(text: &str, stem: bool) -> Vec<String> {
    let lower = text.to_lowercase();
    lower
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .map(|t| if stem && t.len() > 3 { porter::stem(t) } else { t.to_string() })
        .collect()
}

fn ngrams(tokens: &[String], n: usize) -> HashMap<&[String], i64> {
    let mut out = HashMap::new();
    for w in tokens.windows(n) {
        *out.entry(w).or_insert(0) += 1;
    }
    out
}

fn rouge_n(target: &[String], prediction: &[String], n: usize) -> Score {
    let (t, p) = (ngrams(target, n), ngrams(prediction, n));
    let overlap: i64 = t.iter().map(|(g, &c)| c.min(*p.get(g).unwrap_or(&0))).sum();
    let (tc, pc): (i64, i64) = (t.values().sum(), p.values().sum());
    score(overlap as f64 / pc.max(1) as f64, overlap as f64 / tc.max(1) as f64)
}

fn lcs_table(r: &[String], c: &[String]) -> Vec<Vec<usize>> {
    let mut t = vec![vec![0usize; c.len() + 1]; r.len() + 1];
    for i in 1..=r.len() {
        for j in 1..=c.len() {
            t[i][j] = if r[i - 1] == c[j - 1] { t[i - 1][j - 1] + 1 } else { t[i - 1][j].max(t[i][j - 1]) };
        }
    }
    t
}

fn rouge_l(target: &[String], prediction: &[String]) -> Score {
    if target.is_empty() || prediction.is_empty() {
        return Score::default();
    }
    let lcs = lcs_table(target, prediction)[target.len()][prediction.len()] as f64;
    score(lcs / prediction.len() as f64, lcs / target.len() as f64)
}

/// The indices in `r` of one LCS with `c`, found by rouge-score's backtracking.
fn lcs_indices(r: &[String], c: &[String]) -> Vec<usize> {
    let t = lcs_table(r, c);
    let (mut i, mut j, mut out) = (r.len(), c.len(), Vec::new());
    while i > 0 && j > 0 {
        if r[i - 1] == c[j - 1] {
            out.push(i - 1);
            i -= 1;
            j -= 1;
        } else if t[i][j - 1] > t[i - 1][j] {
            j -= 1;
        } else {
            i -= 1;
        }
    }
    out
}

fn rouge_lsum(target: &[Vec<String>], prediction: &[Vec<String>]) -> Score {
    let m: usize = target.iter().map(Vec::len).sum();
    let n: usize = prediction.iter().map(Vec::len).sum();
    if target.is_empty() || prediction.is_empty() || m == 0 || n == 0 {
        return Score::default();
    }
    let mut count_r: HashMap<&str, i64> = HashMap::new();
    let mut count_c: HashMap<&str, i64> = HashMap::new();
    for t in target.iter().flatten() {
        *count_r.entry(t).or_insert(0) += 1;
    }
    for t in prediction.iter().flatten() {
        *count_c.entry(t).or_insert(0) += 1;
    }
    let mut hits = 0usize;
    for r in target {
        let mut union: Vec<usize> = prediction.iter().flat_map(|c| lcs_indices(r, c)).collect();
        union.sort_unstable();
        union.dedup();
        for i in union {
            let t = r[i].as_str();
            let (cc, cr) = (count_c.get(t).copied().unwrap_or(0), count_r.get(t).copied().unwrap_or(0));
            if cc > 0 && cr > 0 {
                hits += 1;
                count_c.insert(t, cc - 1);
                count_r.insert(t, cr - 1);
            }
        }
    }
    score(hits as f64 / n as f64, hits as f64 / m as f64)
}

/// Sentences of a text for ROUGE-Lsum: its non-empty lines.
fn sentences(text: &str, stem: bool) -> Vec<Vec<String>> {
    text.split('\n').filter(|s| !s.is_empty()).map(|s| tokenize(s, stem)).collect()
}

/// One type's score of `prediction` against one `target`.
pub fn score_one(kind: RougeType, target: &str, prediction: &str, stem: bool) -> Score {
    match kind {
        RougeType::N(n) => rouge_n(&tokenize(target, stem), &tokenize(prediction, stem), n),
        RougeType::L => rouge_l(&tokenize(target, stem), &tokenize(prediction, stem)),
        RougeType::Lsum => rouge_lsum(&sentences(target, stem), &sentences(prediction, stem)),
    }
}

/// The score against several targets: the one with the highest F-measure (the first on a tie),
/// as rouge-score's `score_multi`.
pub fn score_multi(kind: RougeType, targets: &[&str], prediction: &str, stem: bool) -> Result<Score> {
    if targets.is_empty() {
        bail!("no references");
    }
    let mut best: Option<Score> = None;
    for t in targets {
        let s = score_one(kind, t, prediction, stem);
        if best.is_none_or(|b| s.fmeasure > b.fmeasure) {
            best = Some(s);
        }
    }
    Ok(best.unwrap_or_default())
}

/// Per type, the mean over the items added of their scores (each prediction against its
/// references, `score_multi`): what `mt.metrics.rouge` reports.
#[derive(Clone, Debug, PartialEq)]
pub struct RougeMean {
    kinds: Vec<RougeType>,
    stem: bool,
    sums: Vec<Score>,
    items: usize,
}

impl RougeMean {
    pub fn new(kinds: Vec<RougeType>, stem: bool) -> RougeMean {
        RougeMean { sums: vec![Score::default(); kinds.len()], kinds, stem, items: 0 }
    }

    /// Adds predictions, each with its references.
    pub fn add(&mut self, preds: &[String], refs: &[Vec<String>]) -> Result<()> {
        if preds.len() != refs.len() {
            bail!("{} predictions for {} references", preds.len(), refs.len());
        }
        // Score everything before adding anything, so that an error leaves the sums as they were.
        let mut batch = vec![Score::default(); self.kinds.len()];
        for (pred, targets) in preds.iter().zip(refs) {
            let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
            for (sum, &kind) in batch.iter_mut().zip(&self.kinds) {
                sum.add(score_multi(kind, &targets, pred, self.stem)?);
            }
        }
        for (sum, b) in self.sums.iter_mut().zip(batch) {
            sum.add(b);
        }
        self.items += preds.len();
        Ok(())
    }

    pub fn items(&self) -> usize {
        self.items
    }

    /// The mean of each type, in the order of `kinds`.
    pub fn mean(&self) -> Result<Vec<Score>> {
        if self.items == 0 {
            bail!("no predictions");
        }
        let n = self.items as f64;
        Ok(self.sums.iter().map(|s| Score { precision: s.precision / n, recall: s.recall / n, fmeasure: s.fmeasure / n }).collect())
    }
}
