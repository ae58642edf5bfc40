//! BLEU as sacrebleu 2.x computes it (`corpus_bleu`, `sentence_bleu`): its tokenisers (13a, the
//! default, mteval-v13a's; intl, mteval-v14's Unicode punctuation and symbols; char; none),
//! optional lowercasing, n-grams up to 4 clipped by the maximum count over the references, the
//! closest reference length (the shorter on a tie) for the brevity penalty, and its smoothing
//! methods (exp, the default; floor, 0.1; add-k, 1; none), with effective order for sentences.

use std::collections::HashMap;
use std::sync::OnceLock;

use anyhow::{bail, Result};
use regex::Regex;

use super::text::{lower, rstrip, split_whitespace};

pub const MAX_ORDER: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Tokenize {
    Thirteen,
    Intl,
    Char,
    None,
}

impl Tokenize {
    pub fn parse(name: &str) -> Result<Tokenize> {
        Ok(match name {
            "13a" => Tokenize::Thirteen,
            "intl" => Tokenize::Intl,
            "char" => Tokenize::Char,
            "none" => Tokenize::None,
            other => bail!("tokenize '{other}' is not one of 13a, intl, char, none"),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Smooth {
    Exp,
    Floor(f64),
    AddK(f64),
    None,
}

impl Smooth {
    /// sacrebleu's `smooth_method` and `smooth_value` (None: the method's default).
    pub fn parse(method: &str, value: Option<f64>) -> Result<Smooth> {
        Ok(match method {
            "exp" => Smooth::Exp,
            "floor" => Smooth::Floor(value.unwrap_or(0.1)),
            "add-k" => Smooth::AddK(value.unwrap_or(1.0)),
            "none" => Smooth::None,
            other => bail!("smooth_method '{other}' is not one of exp, floor, add-k, none"),
        })
    }
}

#[derive(Clone, Copy, Debug)]
pub struct BleuOptions {
    pub tokenize: Tokenize,
    pub smooth: Smooth,
    pub lowercase: bool,
    /// Leave out n-gram orders past the last one the hypothesis has (sentence BLEU).
    pub effective_order: bool,
}

impl Default for BleuOptions {
    fn default() -> Self {
        BleuOptions { tokenize: Tokenize::Thirteen, smooth: Smooth::Exp, lowercase: false, effective_order: false }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct BleuScore {
    /// 0 to 100.
    pub score: f64,
    /// Matched n-grams of each order (after add-k smoothing, as sacrebleu reports them).
    pub counts: Vec<f64>,
    /// Hypothesis n-grams of each order.
    pub totals: Vec<f64>,
    /// Percent precision of each order.
    pub precisions: Vec<f64>,
    /// Brevity penalty.
    pub bp: f64,
    pub sys_len: i64,
    pub ref_len: i64,
}

fn regexes_13a() -> &'static [(Regex, &'static str); 4] {
    static RE: OnceLock<[(Regex, &'static str); 4]> = OnceLock::new();
    RE.get_or_init(|| {
        let re = |p: &str| Regex::new(p).expect("a valid pattern");
        [
            (re(r"([{-~\[-` -&(-+:-@/])"), " ${1} "),
            (re(r"([^0-9])([.,])"), "${1} ${2} "),
            (re(r"([.,])([^0-9])"), " ${1} ${2}"),
            (re(r"([0-9])(-)"), "${1} ${2} "),
        ]
    })
}

fn regexes_intl() -> &'static [(Regex, &'static str); 3] {
    static RE: OnceLock<[(Regex, &'static str); 3]> = OnceLock::new();
    RE.get_or_init(|| {
        let re = |p: &str| Regex::new(p).expect("a valid pattern");
        [(re(r"(\P{N})(\p{P})"), "${1} ${2} "), (re(r"(\p{P})(\P{N})"), " ${1} ${2}"), (re(r"(\p{S})"), " ${1} ")]
    })
}

fn apply(line: String, rules: &[(Regex, &str)]) -> String {
    let out = rules.iter().fold(line, |s, (re, rep)| re.replace_all(&s, *rep).into_owned());
    split_whitespace(&out).join(" ")
}

/// A segment as sacrebleu's tokeniser `kind` leaves it (tokens joined by single spaces).
pub fn tokenize(line: &str, kind: Tokenize) -> String {
    match kind {
        Tokenize::None => line.to_string(),
        Tokenize::Char => line.chars().map(String::from).collect::<Vec<_>>().join(" "),
        Tokenize::Intl => apply(line.to_string(), regexes_intl()),
        Tokenize::Thirteen => {
            let mut s = line.replace("<skipped>", "").replace("-\n", "").replace('\n', " ");
            if s.contains('&') {
                s = s.replace("&quot;", "\"").replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">");
            }
            apply(format!(" {s} "), regexes_13a())
        }
    }
}

fn preprocess(line: &str, o: &BleuOptions) -> String {
    let line = if o.lowercase { lower(line) } else { line.to_string() };
    tokenize(rstrip(&line), o.tokenize)
}

/// Counts of every n-gram (1 ≤ n ≤ 4) of a tokenised segment, and its length in tokens.
fn ngrams(tokens: &[String]) -> HashMap<&[String], i64> {
    let mut out = HashMap::new();
    for n in 1..=MAX_ORDER {
        for w in tokens.windows(n) {
            *out.entry(w).or_insert(0) += 1;
        }
    }
    out
}

/// The sufficient statistics of a corpus: lengths and, per order, matches and totals.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BleuStats {
    pub sys_len: i64,
    pub ref_len: i64,
    pub correct: [i64; MAX_ORDER],
    pub total: [i64; MAX_ORDER],
}

impl BleuStats {
    /// Adds one segment: its hypothesis and its references (one or more).
    pub fn add_segment(&mut self, hyp: &str, refs: &[&str], o: &BleuOptions) {
        let hyp: Vec<String> = split_whitespace(&preprocess(hyp, o)).into_iter().map(String::from).collect();
        let refs: Vec<Vec<String>> = refs.iter().map(|r| split_whitespace(&preprocess(r, o)).into_iter().map(String::from).collect()).collect();
        let mut max_ref: HashMap<&[String], i64> = HashMap::new();
        for r in &refs {
            for (g, c) in ngrams(r) {
                let e = max_ref.entry(g).or_insert(0);
                *e = (*e).max(c);
            }
        }
        let hyp_len = hyp.len() as i64;
        // The closest reference length, the shorter one on a tie.
        let mut closest: Option<(i64, i64)> = None;
        for r in &refs {
            let len = r.len() as i64;
            let diff = (hyp_len - len).abs();
            closest = match closest {
                Some((d, l)) if d < diff || (d == diff && l <= len) => Some((d, l)),
                _ => Some((diff, len)),
            };
        }
        self.sys_len += hyp_len;
        self.ref_len += closest.map(|(_, l)| l).unwrap_or(0);
        for (g, c) in ngrams(&hyp) {
            let n = g.len() - 1;
            self.total[n] += c;
            if let Some(r) = max_ref.get(g) {
                self.correct[n] += c.min(*r);
            }
        }
    }

    /// Adds a corpus: hypotheses and reference streams (`refs[k][i]`, the k-th reference of
    /// hypothesis i).
    pub fn add_corpus(&mut self, hyps: &[String], refs: &[Vec<String>], o: &BleuOptions) -> Result<()> {
        check_streams(hyps.len(), refs)?;
        for (i, h) in hyps.iter().enumerate() {
            let segment: Vec<&str> = refs.iter().map(|s| s[i].as_str()).collect();
            self.add_segment(h, &segment, o);
        }
        Ok(())
    }

    /// The score from the statistics (sacrebleu's `compute_bleu`).
    pub fn score(&self, o: &BleuOptions) -> BleuScore {
        let mut correct: Vec<f64> = self.correct.iter().map(|&c| c as f64).collect();
        let mut total: Vec<f64> = self.total.iter().map(|&c| c as f64).collect();
        let (sys_len, ref_len) = (self.sys_len, self.ref_len);
        let bp = if sys_len < ref_len {
            if sys_len > 0 { (1.0 - ref_len as f64 / sys_len as f64).exp() } else { 0.0 }
        } else {
            1.0
        };
        let mut precisions = vec![0.0; MAX_ORDER];
        let done = |score, correct, total, precisions| BleuScore { score, counts: correct, totals: total, precisions, bp, sys_len, ref_len };
        if correct.iter().all(|&c| c == 0.0) {
            return done(0.0, correct, total, precisions);
        }
        let mut smooth_mteval = 1.0;
        let mut eff_order = MAX_ORDER;
        for n in 1..=MAX_ORDER {
            if let Smooth::AddK(k) = o.smooth {
                if n > 1 {
                    correct[n - 1] += k;
                    total[n - 1] += k;
                }
            }
            if total[n - 1] == 0.0 {
                break;
            }
            if o.effective_order {
                eff_order = n;
            }
            if correct[n - 1] == 0.0 {
                match o.smooth {
                    Smooth::Exp => {
                        smooth_mteval *= 2.0;
                        precisions[n - 1] = 100.0 / (smooth_mteval * total[n - 1]);
                    }
                    Smooth::Floor(v) => precisions[n - 1] = 100.0 * v / total[n - 1],
                    _ => {}
                }
            } else {
                precisions[n - 1] = 100.0 * correct[n - 1] / total[n - 1];
            }
        }
        let log = |p: f64| if p == 0.0 { -9999999999.0 } else { p.ln() };
        let score = bp * (precisions[..eff_order].iter().map(|&p| log(p)).sum::<f64>() / eff_order as f64).exp();
        done(score, correct, total, precisions)
    }
}

/// Checks that every reference stream has one line per hypothesis.
pub fn check_streams(hyps: usize, refs: &[Vec<String>]) -> Result<()> {
    if refs.is_empty() {
        bail!("no references: give a list of reference streams, each with one reference per hypothesis");
    }
    for (i, stream) in refs.iter().enumerate() {
        if stream.len() != hyps {
            bail!("reference stream {} has {} lines for {hyps} hypotheses", i + 1, stream.len());
        }
    }
    Ok(())
}

/// Corpus BLEU of `hyps` against reference streams (`refs[k][i]` is the k-th reference of
/// hypothesis i), as `sacrebleu.corpus_bleu`.
pub fn corpus_bleu(hyps: &[String], refs: &[Vec<String>], o: &BleuOptions) -> Result<BleuScore> {
    let mut stats = BleuStats::default();
    stats.add_corpus(hyps, refs, o)?;
    Ok(stats.score(o))
}

/// Sentence BLEU of one hypothesis against its references, as `sacrebleu.sentence_bleu`.
pub fn sentence_bleu(hyp: &str, refs: &[String], o: &BleuOptions) -> Result<BleuScore> {
    if refs.is_empty() {
        bail!("no references");
    }
    let mut stats = BleuStats::default();
    stats.add_segment(hyp, &refs.iter().map(String::as_str).collect::<Vec<_>>(), o);
    Ok(stats.score(o))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenisers_split_as_sacrebleu() {
        assert_eq!(tokenize("Hello, world! It costs $3.50-4.", Tokenize::Thirteen), "Hello , world ! It costs $ 3.50 - 4 .");
        assert_eq!(tokenize("a&amp;b", Tokenize::Thirteen), "a & b");
        assert_eq!(tokenize("«Bonjour», dit-il.", Tokenize::Intl), "« Bonjour » , dit - il .");
        assert_eq!(tokenize("ab c", Tokenize::Char), "a b   c");
    }
}
