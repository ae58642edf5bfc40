//! What `moontune data inspect` finds in a dataset: the count, each field's types, the length of
//! each example's text (in tokens with a tokenizer, else characters) as quantiles and a
//! histogram, exact and near-duplicates, personal data by kind, the distribution of label-like
//! fields, and the first examples.

use std::collections::{BTreeMap, HashSet};

use anyhow::Result;
use serde::Serialize;

use super::dataset::Dataset;
use super::minhash::{hash_bytes, Lsh, MinHasher};
use super::pii;
use super::value::Value;
use crate::tokenizer::Tok;

#[derive(Serialize)]
pub struct FieldSummary {
    pub name: String,
    /// Type name → how many examples have it.
    pub types: BTreeMap<String, u64>,
    /// Examples without the field.
    pub missing: u64,
}

#[derive(Serialize)]
pub struct Lengths {
    /// "tokens" or "characters".
    pub unit: String,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
    /// (from, to inclusive, count) for ten equal-width bins.
    pub histogram: Vec<(u64, u64, u64)>,
}

#[derive(Serialize)]
pub struct Inspection {
    pub count: u64,
    pub fields: Vec<FieldSummary>,
    pub lengths: Option<Lengths>,
    pub exact_duplicates: u64,
    pub near_duplicates: u64,
    pub pii: BTreeMap<String, u64>,
    pub examples_with_pii: u64,
    /// Field → (label, count), most frequent first.
    pub labels: BTreeMap<String, Vec<(String, u64)>>,
    pub examples: Vec<serde_json::Value>,
}

/// Names of fields taken for labels whatever their values.
const LABEL_NAMES: [&str; 8] = ["label", "labels", "class", "category", "target", "y", "sentiment", "intent"];
/// Other fields count as labels when they have at most this many distinct short values.
const MAX_CLASSES: usize = 20;

/// The text of an example: its string fields joined by newlines (the example itself when it is
/// a string).
fn text_of(v: &Value) -> String {
    match v {
        Value::Str(s) => s.clone(),
        Value::Record(r) => r.0.iter().filter_map(|(_, v)| v.as_str()).collect::<Vec<_>>().join("\n"),
        _ => String::new(),
    }
}

fn label_text(v: &Value) -> Option<String> {
    match v {
        Value::Str(s) if s.chars().count() <= 40 => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn lengths(mut values: Vec<u64>, unit: &str) -> Option<Lengths> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let (min, max) = (values[0], values[values.len() - 1]);
    let width = ((max - min) / 10 + 1).max(1);
    let mut histogram: Vec<(u64, u64, u64)> = (0..10).map(|i| (min + i * width, min + (i + 1) * width - 1, 0)).filter(|(from, _, _)| *from <= max).collect();
    for v in &values {
        let bin = (((v - min) / width) as usize).min(histogram.len() - 1);
        histogram[bin].2 += 1;
    }
    Some(Lengths {
        unit: unit.to_string(),
        min,
        mean: values.iter().sum::<u64>() as f64 / values.len() as f64,
        p50: quantile(&values, 0.5),
        p90: quantile(&values, 0.9),
        p99: quantile(&values, 0.99),
        max,
        histogram,
    })
}

pub fn inspect(data: &Dataset, tokenizer: Option<&Tok>, show: usize) -> Result<Inspection> {
    let mut stream = data.open(0)?;
    let mut count = 0u64;
    let mut fields: Vec<FieldSummary> = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    let mut exact_duplicates = 0;
    let mut label_counts: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut examples = Vec::new();
    while let Some(ex) = stream.next()? {
        count += 1;
        if examples.len() < show {
            examples.push(ex.to_json()?);
        }
        if !seen.insert(hash_bytes(ex.to_json()?.to_string().as_bytes())) {
            exact_duplicates += 1;
        }
        if let Value::Record(r) = &ex {
            for (k, v) in &r.0 {
                let summary = match fields.iter_mut().position(|f| &f.name == k) {
                    Some(i) => &mut fields[i],
                    None => {
                        fields.push(FieldSummary { name: k.clone(), types: BTreeMap::new(), missing: count - 1 });
                        fields.last_mut().expect("just pushed")
                    }
                };
                *summary.types.entry(v.type_name().to_string()).or_default() += 1;
                if let Some(l) = label_text(v) {
                    let classes = label_counts.entry(k.clone()).or_default();
                    if classes.len() <= MAX_CLASSES || classes.contains_key(&l) || LABEL_NAMES.contains(&k.as_str()) {
                        *classes.entry(l).or_default() += 1;
                    }
                }
            }
            for f in fields.iter_mut().filter(|f| r.get(&f.name).is_none()) {
                f.missing += 1;
            }
        }
        texts.push(text_of(&ex));
    }
    let lengths = match tokenizer {
        Some(tok) => {
            let counts: Vec<Result<u64>> = {
                use rayon::prelude::*;
                texts.par_iter().map(|t| Ok(tok.encode_input(t, None, false, None)?.get_ids().len() as u64)).collect()
            };
            lengths(counts.into_iter().collect::<Result<_>>()?, "tokens")
        }
        None => lengths(texts.iter().map(|t| t.chars().count() as u64).collect(), "characters"),
    };
    let hasher = MinHasher::new(128, 3, 1);
    let mut lsh = Lsh::new(0.8, 128);
    let signatures: Vec<Vec<u64>> = {
        use rayon::prelude::*;
        texts.par_iter().map(|t| hasher.signature(t)).collect()
    };
    let near_duplicates = signatures.into_iter().filter(|s| lsh.insert_unless_near(s.clone())).count() as u64;
    let mut pii_counts: BTreeMap<String, u64> = pii::ALL.iter().map(|k| (k.name().to_string(), 0)).collect();
    let mut examples_with_pii = 0;
    for t in &texts {
        let found = pii::find(t, &pii::ALL);
        examples_with_pii += !found.is_empty() as u64;
        for (kind, _) in found {
            *pii_counts.entry(kind.name().to_string()).or_default() += 1;
        }
    }
    let labels = label_counts
        .into_iter()
        .filter(|(k, classes)| {
            let covered: u64 = classes.values().sum();
            LABEL_NAMES.contains(&k.as_str()) || (classes.len() <= MAX_CLASSES && count >= 2 * classes.len() as u64 && covered == count)
        })
        .map(|(k, classes)| {
            let mut v: Vec<(String, u64)> = classes.into_iter().collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            (k, v)
        })
        .collect();
    Ok(Inspection { count, fields, lengths, exact_duplicates, near_duplicates, pii: pii_counts, examples_with_pii, labels, examples })
}

/// The inspection as text for a terminal.
pub fn render(path: &str, i: &Inspection) -> String {
    let mut out = format!("{path}: {} examples\n\nfields\n", i.count);
    for f in &i.fields {
        let types = f.types.iter().map(|(t, n)| format!("{t} {n}")).collect::<Vec<_>>().join(", ");
        let missing = if f.missing > 0 { format!(", missing in {}", f.missing) } else { String::new() };
        out += &format!("  {:<20} {types}{missing}\n", f.name);
    }
    if let Some(l) = &i.lengths {
        out += &format!(
            "\nlength in {}: min {}, mean {:.1}, median {}, p90 {}, p99 {}, max {}\n",
            l.unit, l.min, l.mean, l.p50, l.p90, l.p99, l.max
        );
        let most = l.histogram.iter().map(|b| b.2).max().unwrap_or(1).max(1);
        for (from, to, n) in &l.histogram {
            let bar = "#".repeat(((*n as f64 / most as f64) * 40.0).round() as usize);
            out += &format!("  {from:>7}–{to:<7} {n:>7} {bar}\n");
        }
    }
    out += &format!("\nduplicates: {} exact, {} near (MinHash Jaccard ≥ 0.8)\n", i.exact_duplicates, i.near_duplicates);
    let found: Vec<String> = i.pii.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{k} {n}")).collect();
    out += &format!(
        "personal data: {}\n",
        if found.is_empty() { "none found".to_string() } else { format!("{} (in {} examples)", found.join(", "), i.examples_with_pii) }
    );
    for (field, classes) in &i.labels {
        let total: u64 = classes.iter().map(|c| c.1).sum();
        out += &format!("\nlabels in '{field}' ({} classes)\n", classes.len());
        for (label, n) in classes.iter().take(MAX_CLASSES) {
            out += &format!("  {label:<24} {n:>7}  {:>5.1}%\n", 100.0 * *n as f64 / total.max(1) as f64);
        }
    }
    if !i.examples.is_empty() {
        out += "\nexamples\n";
        for e in &i.examples {
            let s = e.to_string();
            let short: String = s.chars().take(300).collect();
            out += &format!("  {short}{}\n", if s.chars().count() > 300 { " …" } else { "" });
        }
    }
    out
}
