//! Classification metrics as scikit-learn 1.x computes them: accuracy; precision, recall and F-β
//! per class and averaged (binary, micro, macro, weighted), a zero denominator giving 0 as its
//! `zero_division="warn"` does; the confusion matrix (rows the references, columns the
//! predictions). Labels are integers or strings, ordered as sklearn sorts them; predictions come
//! first, references second (the reverse of sklearn's `y_true, y_pred`).

use std::cmp::Ordering;
use std::collections::HashMap;

use anyhow::{bail, Result};

/// A class label.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Label {
    Int(i64),
    Str(String),
}

impl Label {
    pub fn text(&self) -> String {
        match self {
            Label::Int(i) => i.to_string(),
            Label::Str(s) => s.clone(),
        }
    }
}

impl PartialOrd for Label {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Label {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Label::Int(a), Label::Int(b)) => a.cmp(b),
            (Label::Str(a), Label::Str(b)) => a.cmp(b),
            (Label::Int(_), Label::Str(_)) => Ordering::Less,
            (Label::Str(_), Label::Int(_)) => Ordering::Greater,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Average {
    Binary(Label),
    Micro,
    Macro,
    Weighted,
    /// One value per label.
    PerClass,
}

/// Precision, recall, F-β (one value, or one per label) and the references' count per label.
#[derive(Clone, Debug, PartialEq)]
pub struct Prf {
    pub labels: Vec<Label>,
    pub precision: Vec<f64>,
    pub recall: Vec<f64>,
    pub f: Vec<f64>,
    pub support: Vec<i64>,
}

fn check_pair(preds: &[Label], refs: &[Label]) -> Result<()> {
    if preds.len() != refs.len() {
        bail!("{} predictions for {} references", preds.len(), refs.len());
    }
    if preds.is_empty() {
        bail!("no predictions");
    }
    let ints = preds.iter().chain(refs).filter(|l| matches!(l, Label::Int(_))).count();
    if ints != 0 && ints != 2 * preds.len() {
        bail!("labels mix numbers and strings");
    }
    Ok(())
}

/// The labels present in either list, sorted.
fn present(preds: &[Label], refs: &[Label]) -> Vec<Label> {
    let mut all: Vec<Label> = preds.iter().chain(refs).cloned().collect();
    all.sort();
    all.dedup();
    all
}

pub fn accuracy(preds: &[Label], refs: &[Label]) -> Result<f64> {
    check_pair(preds, refs)?;
    Ok(preds.iter().zip(refs).filter(|(p, r)| p == r).count() as f64 / preds.len() as f64)
}

fn ratio(num: f64, den: f64) -> f64 {
    if den == 0.0 { 0.0 } else { num / den }
}

fn f_beta(tp: f64, fp: f64, fn_: f64, beta: f64) -> f64 {
    let b2 = beta * beta;
    ratio((1.0 + b2) * tp, (1.0 + b2) * tp + b2 * fn_ + fp)
}

/// sklearn's `precision_recall_fscore_support(refs, preds, beta=, labels=, average=)`.
pub fn precision_recall_f(preds: &[Label], refs: &[Label], average: &Average, labels: Option<&[Label]>, beta: f64) -> Result<Prf> {
    check_pair(preds, refs)?;
    if !(beta >= 0.0 && beta.is_finite()) {
        bail!("beta must be a non-negative number, got {beta}");
    }
    let found = present(preds, refs);
    let labels: Vec<Label> = match (average, labels) {
        (Average::Binary(pos), _) => {
            if found.len() > 2 {
                bail!("average 'binary' needs two classes, the labels have {} ({}); choose micro, macro, weighted or none", found.len(), found.iter().map(Label::text).collect::<Vec<_>>().join(", "));
            }
            if found.len() == 2 && !found.contains(pos) {
                bail!("pos_label {} is not one of the labels ({})", pos.text(), found.iter().map(Label::text).collect::<Vec<_>>().join(", "));
            }
            vec![pos.clone()]
        }
        (_, Some(given)) => given.to_vec(),
        (_, None) => found,
    };
    let index: HashMap<&Label, usize> = labels.iter().enumerate().map(|(i, l)| (l, i)).collect();
    let (mut tp, mut pred_n, mut true_n) = (vec![0i64; labels.len()], vec![0i64; labels.len()], vec![0i64; labels.len()]);
    for (p, r) in preds.iter().zip(refs) {
        if let Some(&i) = index.get(p) {
            pred_n[i] += 1;
        }
        if let Some(&i) = index.get(r) {
            true_n[i] += 1;
            if p == r {
                tp[i] += 1;
            }
        }
    }
    let per = |t: i64, pn: i64, tn: i64| {
        let (t, pn, tn) = (t as f64, pn as f64, tn as f64);
        (ratio(t, pn), ratio(t, tn), f_beta(t, pn - t, tn - t, beta))
    };
    let per_class: Vec<(f64, f64, f64)> = (0..labels.len()).map(|i| per(tp[i], pred_n[i], true_n[i])).collect();
    let one = |labels: Vec<Label>, v: (f64, f64, f64), support: i64| Prf { labels, precision: vec![v.0], recall: vec![v.1], f: vec![v.2], support: vec![support] };
    let total_support: i64 = true_n.iter().sum();
    Ok(match average {
        Average::PerClass => Prf {
            labels,
            precision: per_class.iter().map(|v| v.0).collect(),
            recall: per_class.iter().map(|v| v.1).collect(),
            f: per_class.iter().map(|v| v.2).collect(),
            support: true_n,
        },
        Average::Binary(_) => one(labels, per_class[0], true_n[0]),
        Average::Micro => one(labels, per(tp.iter().sum(), pred_n.iter().sum(), total_support), total_support),
        Average::Macro => {
            let n = per_class.len().max(1) as f64;
            let mean = |k: fn(&(f64, f64, f64)) -> f64| per_class.iter().map(k).sum::<f64>() / n;
            one(labels, (mean(|v| v.0), mean(|v| v.1), mean(|v| v.2)), total_support)
        }
        Average::Weighted => {
            let w = total_support as f64;
            let mean = |k: fn(&(f64, f64, f64)) -> f64| if w == 0.0 { 0.0 } else { per_class.iter().zip(&true_n).map(|(v, &s)| k(v) * s as f64).sum::<f64>() / w };
            one(labels, (mean(|v| v.0), mean(|v| v.1), mean(|v| v.2)), total_support)
        }
    })
}

/// sklearn's `confusion_matrix(refs, preds, labels=)`: counts[i][j] is how many references of
/// label i were predicted as label j.
pub fn confusion_matrix(preds: &[Label], refs: &[Label], labels: Option<&[Label]>) -> Result<(Vec<Label>, Vec<Vec<i64>>)> {
    check_pair(preds, refs)?;
    let labels: Vec<Label> = labels.map(<[Label]>::to_vec).unwrap_or_else(|| present(preds, refs));
    if labels.is_empty() {
        bail!("labels is empty");
    }
    let index: HashMap<&Label, usize> = labels.iter().enumerate().map(|(i, l)| (l, i)).collect();
    if index.len() != labels.len() {
        bail!("labels has a label twice");
    }
    let mut m = vec![vec![0i64; labels.len()]; labels.len()];
    for (p, r) in preds.iter().zip(refs) {
        if let (Some(&i), Some(&j)) = (index.get(r), index.get(p)) {
            m[i][j] += 1;
        }
    }
    Ok((labels, m))
}

/// The fraction of predictions equal to their reference, as strings.
pub fn exact_match(preds: &[String], refs: &[String]) -> Result<f64> {
    if preds.len() != refs.len() {
        bail!("{} predictions for {} references", preds.len(), refs.len());
    }
    if preds.is_empty() {
        bail!("no predictions");
    }
    Ok(preds.iter().zip(refs).filter(|(p, r)| p == r).count() as f64 / preds.len() as f64)
}
