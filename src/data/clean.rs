//! Cleaning steps over text fields, each counting what it did in its last pass (`ds:report()`):
//! Unicode normalisation and whitespace tidying, length filters, PII redaction, and exact and
//! near-duplicate removal (the first occurrence is kept).

use std::collections::HashSet;
use std::cell::RefCell;

use anyhow::{bail, Result};
use rayon::prelude::*;
use unicode_normalization::UnicodeNormalization;

use super::dataset::{Predicate, Transform};
use super::minhash::{hash_bytes, Lsh, MinHasher};
use super::pii::{self, Kind};
use super::tally::Tally;
use super::value::Value;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Form {
    Nfc,
    Nfkc,
    Nfd,
    Nfkd,
}

impl Form {
    pub fn named(name: &str) -> Result<Form> {
        Ok(match name.to_uppercase().as_str() {
            "NFC" => Form::Nfc,
            "NFKC" => Form::Nfkc,
            "NFD" => Form::Nfd,
            "NFKD" => Form::Nfkd,
            _ => bail!("form must be NFC, NFKC, NFD or NFKD, got \"{name}\""),
        })
    }

    fn apply(self, s: &str) -> String {
        match self {
            Form::Nfc => s.nfc().collect(),
            Form::Nfkc => s.nfkc().collect(),
            Form::Nfd => s.nfd().collect(),
            Form::Nfkd => s.nfkd().collect(),
        }
    }
}

/// Runs of spaces and tabs become one space, lines lose trailing spaces, more than one blank
/// line becomes one, and the text loses leading and trailing whitespace.
pub fn tidy_whitespace(s: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut blank_run = 0;
    for line in s.lines() {
        let line = line.split([' ', '\t', '\u{a0}']).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");
        if line.is_empty() {
            blank_run += 1;
            if blank_run > 1 {
                continue;
            }
        } else {
            blank_run = 0;
        }
        lines.push(line);
    }
    lines.join("\n").trim().to_string()
}

/// The string fields a cleaning step works on, checked per example.
fn texts<'a>(ex: &'a Value, fields: &[String], index: u64) -> Result<Vec<&'a str>> {
    fields.iter().map(|f| ex.text_field(f, index)).collect()
}

fn replace_fields(ex: Value, fields: &[String], new: Vec<String>) -> Value {
    let Value::Record(mut r) = ex else { return ex };
    for (f, text) in fields.iter().zip(new) {
        r.insert(f, Value::Str(text));
    }
    Value::Record(r)
}

pub struct Normalize {
    pub fields: Vec<String>,
    pub form: Option<Form>,
    pub whitespace: bool,
    pub tally: Tally,
}

impl Transform for Normalize {
    fn apply(&self, examples: Vec<Value>, first: u64) -> Result<Vec<Value>> {
        examples
            .into_iter()
            .enumerate()
            .map(|(k, ex)| {
                let old = texts(&ex, &self.fields, first + k as u64)?;
                let new: Vec<String> = old
                    .iter()
                    .map(|s| {
                        let s = self.form.map(|f| f.apply(s)).unwrap_or_else(|| s.to_string());
                        if self.whitespace { tidy_whitespace(&s) } else { s }
                    })
                    .collect();
                let changed = old.iter().zip(&new).any(|(a, b)| *a != b);
                self.tally.add("examples", 1);
                self.tally.add("changed", changed as u64);
                Ok(replace_fields(ex, &self.fields, new))
            })
            .collect()
    }

    fn begin(&self) {
        self.tally.reset();
    }

    fn report(&self) -> Vec<(String, u64)> {
        self.tally.counts()
    }
}

pub enum Unit {
    Chars,
    Words,
}

pub struct LengthFilter {
    pub field: String,
    pub unit: Unit,
    pub min: Option<usize>,
    pub max: Option<usize>,
    pub tally: Tally,
}

impl Predicate for LengthFilter {
    fn keep(&self, ex: &Value, index: u64) -> Result<bool> {
        let text = ex.text_field(&self.field, index)?;
        let n = match self.unit {
            Unit::Chars => text.chars().count(),
            Unit::Words => text.split_whitespace().count(),
        };
        self.tally.add("examples", 1);
        if self.min.is_some_and(|m| n < m) {
            self.tally.add("too_short", 1);
            return Ok(false);
        }
        if self.max.is_some_and(|m| n > m) {
            self.tally.add("too_long", 1);
            return Ok(false);
        }
        Ok(true)
    }

    fn begin(&self) {
        self.tally.reset();
    }

    fn report(&self) -> Vec<(String, u64)> {
        self.tally.counts()
    }
}

pub struct Redact {
    pub fields: Vec<String>,
    pub kinds: Vec<Kind>,
    pub tally: Tally,
}

impl Transform for Redact {
    fn apply(&self, examples: Vec<Value>, first: u64) -> Result<Vec<Value>> {
        let gathered: Vec<Vec<String>> = examples
            .iter()
            .enumerate()
            .map(|(k, ex)| Ok(texts(ex, &self.fields, first + k as u64)?.into_iter().map(str::to_string).collect()))
            .collect::<Result<_>>()?;
        let kinds = &self.kinds;
        let redacted: Vec<Vec<(String, Vec<Kind>)>> = gathered.par_iter().map(|fields| fields.iter().map(|t| pii::redact(t, kinds)).collect()).collect();
        Ok(examples
            .into_iter()
            .zip(redacted)
            .map(|(ex, fields)| {
                self.tally.add("examples", 1);
                let mut any = false;
                let mut new = Vec::with_capacity(fields.len());
                for (text, kinds) in fields {
                    for k in &kinds {
                        self.tally.add(k.name(), 1);
                    }
                    any |= !kinds.is_empty();
                    new.push(text);
                }
                self.tally.add("changed", any as u64);
                replace_fields(ex, &self.fields, new)
            })
            .collect())
    }

    fn chunk(&self) -> usize {
        1024
    }

    fn begin(&self) {
        self.tally.reset();
    }

    fn report(&self) -> Vec<(String, u64)> {
        self.tally.counts()
    }
}

/// What makes two examples the same for de-duplication: the named fields, or the whole example.
fn dedup_key(ex: &Value, fields: &[String], index: u64) -> Result<String> {
    if fields.is_empty() {
        return Ok(ex.to_json()?.to_string());
    }
    Ok(texts(ex, fields, index)?.join("\u{1f}"))
}

pub enum Dedup {
    Exact,
    Near { hasher: MinHasher, threshold: f64, num_perm: usize },
}

/// Removes examples equal (or, near, similar) to an earlier one in the same pass.
pub struct Deduplicate {
    pub fields: Vec<String>,
    pub how: Dedup,
    seen: RefCell<HashSet<u64>>,
    lsh: RefCell<Option<Lsh>>,
    pub tally: Tally,
}

impl Deduplicate {
    pub fn new(fields: Vec<String>, how: Dedup) -> Deduplicate {
        Deduplicate { fields, how, seen: RefCell::new(HashSet::new()), lsh: RefCell::new(None), tally: Tally::with(&["examples", "duplicates"]) }
    }
}

impl Predicate for Deduplicate {
    fn keep(&self, ex: &Value, index: u64) -> Result<bool> {
        Ok(self.keep_many(std::slice::from_ref(ex), index)?[0])
    }

    fn keep_many(&self, examples: &[Value], first: u64) -> Result<Vec<bool>> {
        let keys: Vec<String> = examples.iter().enumerate().map(|(k, ex)| dedup_key(ex, &self.fields, first + k as u64)).collect::<Result<_>>()?;
        self.tally.add("examples", keys.len() as u64);
        let keep: Vec<bool> = match &self.how {
            Dedup::Exact => {
                let mut seen = self.seen.borrow_mut();
                keys.iter().map(|k| seen.insert(hash_bytes(k.as_bytes()))).collect()
            }
            Dedup::Near { hasher, threshold, num_perm } => {
                let sigs: Vec<Vec<u64>> = keys.par_iter().map(|k| hasher.signature(k)).collect();
                let mut lsh = self.lsh.borrow_mut();
                let lsh = lsh.get_or_insert_with(|| Lsh::new(*threshold, *num_perm));
                sigs.into_iter().map(|s| !lsh.insert_unless_near(s)).collect()
            }
        };
        self.tally.add("duplicates", keep.iter().filter(|k| !**k).count() as u64);
        Ok(keep)
    }

    fn chunk(&self) -> usize {
        match self.how {
            Dedup::Exact => 1,
            Dedup::Near { .. } => 512,
        }
    }

    fn begin(&self) {
        self.tally.reset();
        self.seen.borrow_mut().clear();
        *self.lsh.borrow_mut() = None;
    }

    fn report(&self) -> Vec<(String, u64)> {
        self.tally.counts()
    }
}
