//! `mt.metrics`: BLEU, chrF, ROUGE, accuracy, precision/recall/F1, the confusion matrix and exact match
//! (src/metrics), predictions first; and `mt.metrics.stream(name, opts)`, which adds batches with
//! `m:add(preds, refs)` (converted at once: running statistics, or the labels themselves) and
//! computes over all of them with `m:compute()`.

use mlua::{Lua, Table, UserData, UserDataMethods, Value};
use serde::Deserialize;

use super::args::{describe, misuse, options, text, OrMisuse};
use super::callbacks::function;
use crate::metrics::bleu::{self, BleuOptions, BleuScore, BleuStats, Smooth, Tokenize};
use crate::metrics::chrf::{self, ChrfOptions, ChrfStats};
use crate::metrics::classification::{self, Average, Label};
use crate::metrics::perplexity::{self, Perplexity};
use crate::metrics::rouge::{RougeMean, RougeType};

/// A list of strings (`what` names it in errors).
fn strings(call: &str, what: &str, v: &Value) -> mlua::Result<Vec<String>> {
    let Value::Table(t) = v else { return Err(misuse(call, format!("{what} must be a list of strings, got {}", describe(v)))) };
    let mut out = Vec::with_capacity(t.raw_len());
    for i in 1..=t.raw_len() {
        match t.raw_get::<Value>(i)? {
            Value::String(s) => out.push(text(call, what, &s)?),
            other => return Err(misuse(call, format!("{what}[{i}] must be a string, got {}", describe(&other)))),
        }
    }
    Ok(out)
}

/// A number, or a one-element tensor (a loss).
fn number(call: &str, what: &str, v: &Value) -> mlua::Result<f64> {
    match v {
        Value::Integer(i) => Ok(*i as f64),
        Value::Number(x) => Ok(*x),
        other => match super::tensor::as_tensor(other) {
            Some(t) if t.numel() == 1 => t.f_double_value(&[]).or_misuse(call),
            _ => Err(misuse(call, format!("{what} must be a number or a one-element tensor, got {}", describe(other)))),
        },
    }
}

fn numbers(call: &str, what: &str, v: &Value) -> mlua::Result<Vec<f64>> {
    let Value::Table(t) = v else { return Err(misuse(call, format!("{what} must be a list of numbers, got {}", describe(v)))) };
    (1..=t.raw_len()).map(|i| number(call, &format!("{what}[{i}]"), &t.raw_get::<Value>(i)?)).collect()
}

/// Reference streams: a list of lists of strings (`refs[k][i]`, the k-th reference of item i).
fn streams(call: &str, v: &Value) -> mlua::Result<Vec<Vec<String>>> {
    let Value::Table(t) = v else { return Err(misuse(call, format!("references must be a list of reference streams (lists of strings), got {}", describe(v)))) };
    if matches!(t.raw_get::<Value>(1)?, Value::String(_)) {
        return Err(misuse(call, "references must be a list of reference streams, each a list of strings with one per hypothesis: wrap a single stream as { refs }"));
    }
    (1..=t.raw_len()).map(|k| strings(call, &format!("references[{k}]"), &t.raw_get::<Value>(k)?)).collect()
}

fn labels(call: &str, what: &str, v: &Value) -> mlua::Result<Vec<Label>> {
    let Value::Table(t) = v else { return Err(misuse(call, format!("{what} must be a list of labels, got {}", describe(v)))) };
    (1..=t.raw_len())
        .map(|i| match t.raw_get::<Value>(i)? {
            Value::Integer(n) => Ok(Label::Int(n)),
            Value::Number(x) if x.fract() == 0.0 && x.abs() < 9e15 => Ok(Label::Int(x as i64)),
            Value::String(s) => Ok(Label::Str(text(call, what, &s)?)),
            other => Err(misuse(call, format!("{what}[{i}] must be an integer or a string, got {}", describe(&other)))),
        })
        .collect()
}

fn label_value(lua: &Lua, l: &Label) -> mlua::Result<Value> {
    Ok(match l {
        Label::Int(i) => Value::Integer(*i),
        Label::Str(s) => Value::String(lua.create_string(s)?),
    })
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct BleuArgs {
    /// "13a" (default), "intl", "char" or "none".
    tokenize: Option<String>,
    /// "exp" (default), "floor", "add-k" or "none".
    smooth_method: Option<String>,
    smooth_value: Option<f64>,
    lowercase: Option<bool>,
    /// Default false for corpus BLEU, true for sentence BLEU (as sacrebleu).
    use_effective_order: Option<bool>,
}

impl BleuArgs {
    fn resolve(&self, call: &str, effective_default: bool) -> mlua::Result<BleuOptions> {
        Ok(BleuOptions {
            tokenize: Tokenize::parse(self.tokenize.as_deref().unwrap_or("13a")).or_misuse(call)?,
            smooth: Smooth::parse(self.smooth_method.as_deref().unwrap_or("exp"), self.smooth_value).or_misuse(call)?,
            lowercase: self.lowercase.unwrap_or(false),
            effective_order: self.use_effective_order.unwrap_or(effective_default),
        })
    }
}

fn bleu_table(lua: &Lua, s: BleuScore) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("score", s.score)?;
    t.set("counts", s.counts)?;
    t.set("totals", s.totals)?;
    t.set("precisions", s.precisions)?;
    t.set("bp", s.bp)?;
    t.set("sys_len", s.sys_len)?;
    t.set("ref_len", s.ref_len)?;
    Ok(t)
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct ChrfArgs {
    char_order: Option<usize>,
    /// 0 for chrF (default), 2 for chrF++.
    word_order: Option<usize>,
    beta: Option<f64>,
    lowercase: Option<bool>,
    whitespace: Option<bool>,
    eps_smoothing: Option<bool>,
}

impl ChrfArgs {
    fn resolve(&self) -> ChrfOptions {
        let d = ChrfOptions::default();
        ChrfOptions {
            char_order: self.char_order.unwrap_or(d.char_order),
            word_order: self.word_order.unwrap_or(d.word_order),
            beta: self.beta.unwrap_or(d.beta),
            lowercase: self.lowercase.unwrap_or(false),
            whitespace: self.whitespace.unwrap_or(false),
            eps_smoothing: self.eps_smoothing.unwrap_or(false),
        }
    }
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct ClassArgs {
    /// "binary" (default for precision/recall/f1), "micro", "macro", "weighted" or "none".
    average: Option<String>,
    /// The positive class for "binary" (default 1).
    pos_label: Option<serde_json::Value>,
    /// The labels to count, in order (default: every label present, sorted).
    labels: Option<Vec<serde_json::Value>>,
    /// F-β's β (f1: 1).
    beta: Option<f64>,
}

fn json_label(call: &str, v: &serde_json::Value) -> mlua::Result<Label> {
    match v {
        serde_json::Value::Number(n) if n.as_i64().is_some() => Ok(Label::Int(n.as_i64().unwrap_or_default())),
        serde_json::Value::Number(n) if n.as_f64().is_some_and(|x| x.fract() == 0.0) => Ok(Label::Int(n.as_f64().unwrap_or_default() as i64)),
        serde_json::Value::String(s) => Ok(Label::Str(s.clone())),
        other => Err(misuse(call, format!("a label must be an integer or a string, got {other}"))),
    }
}

impl ClassArgs {
    fn average(&self, call: &str) -> mlua::Result<Average> {
        let pos = self.pos_label.as_ref().map(|v| json_label(call, v)).transpose()?.unwrap_or(Label::Int(1));
        Ok(match self.average.as_deref().unwrap_or("binary") {
            "binary" => Average::Binary(pos),
            "micro" => Average::Micro,
            "macro" => Average::Macro,
            "weighted" => Average::Weighted,
            "none" => Average::PerClass,
            other => return Err(misuse(call, format!("average '{other}' is not one of binary, micro, macro, weighted, none"))),
        })
    }

    fn labels(&self, call: &str) -> mlua::Result<Option<Vec<Label>>> {
        self.labels.as_ref().map(|ls| ls.iter().map(|v| json_label(call, v)).collect()).transpose()
    }
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RougeArgs {
    /// Default { "rouge1", "rouge2", "rougeL", "rougeLsum" }.
    rouge_types: Option<Vec<String>>,
    use_stemmer: Option<bool>,
}

/// Each item's references: a string, or a list of strings.
fn item_references(call: &str, v: &Value) -> mlua::Result<Vec<Vec<String>>> {
    let Value::Table(t) = v else { return Err(misuse(call, format!("references must be a list (a string or a list of strings per prediction), got {}", describe(v)))) };
    (1..=t.raw_len())
        .map(|i| match t.raw_get::<Value>(i)? {
            Value::String(s) => Ok(vec![text(call, "a reference", &s)?]),
            list @ Value::Table(_) => strings(call, &format!("references[{i}]"), &list),
            other => Err(misuse(call, format!("references[{i}] must be a string or a list of strings, got {}", describe(&other)))),
        })
        .collect()
}

impl RougeArgs {
    /// The types' names and an empty mean over them.
    fn resolve(&self, call: &str) -> mlua::Result<(Vec<String>, RougeMean)> {
        let names = self.rouge_types.clone().unwrap_or_else(|| ["rouge1", "rouge2", "rougeL", "rougeLsum"].map(String::from).to_vec());
        let kinds = names.iter().map(|n| RougeType::parse(n)).collect::<anyhow::Result<Vec<_>>>().or_misuse(call)?;
        Ok((names, RougeMean::new(kinds, self.use_stemmer.unwrap_or(false))))
    }
}

/// Per type, the mean precision, recall and F-measure over the items.
fn rouge_table(lua: &Lua, call: &str, names: &[String], mean: &RougeMean) -> mlua::Result<Value> {
    let t = lua.create_table()?;
    for (name, s) in names.iter().zip(mean.mean().or_misuse(call)?) {
        let entry = lua.create_table()?;
        entry.set("precision", s.precision)?;
        entry.set("recall", s.recall)?;
        entry.set("fmeasure", s.fmeasure)?;
        t.set(name.as_str(), entry)?;
    }
    Ok(Value::Table(t))
}

/// Which of precision, recall and F a call returns.
#[derive(Clone, Copy)]
enum Pick {
    Precision,
    Recall,
    F,
}

fn prf(lua: &Lua, call: &str, preds: &[Label], refs: &[Label], o: &ClassArgs, pick: Pick, beta: f64) -> mlua::Result<Value> {
    let average = o.average(call)?;
    let given = o.labels(call)?;
    let r = classification::precision_recall_f(preds, refs, &average, given.as_deref(), beta).or_misuse(call)?;
    let values = match pick {
        Pick::Precision => r.precision,
        Pick::Recall => r.recall,
        Pick::F => r.f,
    };
    if average != Average::PerClass {
        return Ok(Value::Number(values[0]));
    }
    // Per class: a table keyed by label.
    let t = lua.create_table()?;
    for (l, v) in r.labels.iter().zip(values) {
        t.set(label_value(lua, l)?, v)?;
    }
    Ok(Value::Table(t))
}

fn confusion(lua: &Lua, call: &str, preds: &[Label], refs: &[Label], given: Option<Vec<Label>>) -> mlua::Result<Table> {
    // Names for integer classes 0..k-1 (`labels = { "neg", "pos" }` with labels 0 and 1), or
    // the labels to count, in order.
    let all_int = preds.iter().chain(refs).all(|l| matches!(l, Label::Int(_)));
    let (order, names) = match given {
        Some(g) if all_int && g.iter().all(|l| matches!(l, Label::Str(_))) => ((0..g.len() as i64).map(Label::Int).collect(), Some(g)),
        Some(g) => (g, None),
        None => (Vec::new(), None),
    };
    let (labels, m) = classification::confusion_matrix(preds, refs, if order.is_empty() { None } else { Some(&order) }).or_misuse(call)?;
    let t = lua.create_table()?;
    t.set("matrix", m)?;
    let shown = names.unwrap_or(labels);
    t.set("labels", shown.iter().map(|l| label_value(lua, l)).collect::<mlua::Result<Vec<_>>>()?)?;
    Ok(t)
}

/// What a stream has gathered: running statistics where the metric sums (BLEU, chrF, ROUGE,
/// perplexity), the items themselves where it needs them all (classification, exact match).
/// Batches are converted when added, so a table the caller reuses does not change them.
#[derive(Clone)]
enum Gathered {
    Bleu(BleuOptions, BleuStats, usize),
    Chrf(ChrfOptions, ChrfStats, usize),
    Rouge(Vec<String>, RougeMean),
    Labels(LabelMetric, Vec<Label>, Vec<Label>),
    Texts(Vec<String>, Vec<String>),
    Perplexity(Perplexity),
}

/// The classification metric a stream of labels computes.
#[derive(Clone)]
enum LabelMetric {
    Accuracy,
    Class(Pick, ClassArgs),
    Confusion(ClassArgs),
}

/// `mt.metrics.stream(name, opts)`: predictions and references added batch by batch.
struct Stream {
    gathered: Gathered,
    /// As made, for `reset`.
    empty: Gathered,
}

impl Stream {
    fn add(&mut self, preds: Value, refs: Value) -> mlua::Result<()> {
        let call = "stream.add";
        match &mut self.gathered {
            Gathered::Perplexity(p) => p.add(number(call, "the loss", &preds)?, number(call, "the token count", &refs)?).or_misuse(call),
            Gathered::Bleu(o, stats, n) => {
                let hyps = strings(call, "predictions", &preds)?;
                stats.add_corpus(&hyps, &streams(call, &refs)?, o).or_misuse(call)?;
                *n += hyps.len();
                Ok(())
            }
            Gathered::Chrf(o, stats, n) => {
                let hyps = strings(call, "predictions", &preds)?;
                stats.add_corpus(&hyps, &streams(call, &refs)?, o).or_misuse(call)?;
                *n += hyps.len();
                Ok(())
            }
            Gathered::Rouge(_, mean) => mean.add(&strings(call, "predictions", &preds)?, &item_references(call, &refs)?).or_misuse(call),
            Gathered::Labels(_, ps, rs) => {
                let (p, r) = (labels(call, "predictions", &preds)?, labels(call, "references", &refs)?);
                if p.len() != r.len() {
                    return Err(misuse(call, format!("{} predictions for {} references", p.len(), r.len())));
                }
                ps.extend(p);
                rs.extend(r);
                Ok(())
            }
            Gathered::Texts(ps, rs) => {
                let (p, r) = (strings(call, "predictions", &preds)?, strings(call, "references", &refs)?);
                if p.len() != r.len() {
                    return Err(misuse(call, format!("{} predictions for {} references", p.len(), r.len())));
                }
                ps.extend(p);
                rs.extend(r);
                Ok(())
            }
        }
    }

    fn compute(&self, lua: &Lua) -> mlua::Result<Value> {
        let call = "stream.compute";
        match &self.gathered {
            Gathered::Perplexity(p) => Ok(Value::Number(p.compute().or_misuse(call)?)),
            Gathered::Bleu(o, stats, _) => Ok(Value::Table(bleu_table(lua, stats.score(o))?)),
            Gathered::Chrf(o, stats, _) => chrf_value(lua, stats.score(o), o),
            Gathered::Rouge(names, mean) => rouge_table(lua, call, names, mean),
            Gathered::Texts(p, r) => Ok(Value::Number(classification::exact_match(p, r).or_misuse(call)?)),
            Gathered::Labels(LabelMetric::Accuracy, p, r) => Ok(Value::Number(classification::accuracy(p, r).or_misuse(call)?)),
            Gathered::Labels(LabelMetric::Class(pick, o), p, r) => prf(lua, call, p, r, o, *pick, o.beta.unwrap_or(1.0)),
            Gathered::Labels(LabelMetric::Confusion(o), p, r) => Ok(Value::Table(confusion(lua, call, p, r, o.labels(call)?)?)),
        }
    }

    /// Items added (for perplexity, tokens).
    fn count(&self) -> f64 {
        match &self.gathered {
            Gathered::Perplexity(p) => p.tokens(),
            Gathered::Bleu(_, _, n) | Gathered::Chrf(_, _, n) => *n as f64,
            Gathered::Rouge(_, mean) => mean.items() as f64,
            Gathered::Labels(_, p, _) => p.len() as f64,
            Gathered::Texts(p, _) => p.len() as f64,
        }
    }
}

fn chrf_value(lua: &Lua, score: f64, o: &ChrfOptions) -> mlua::Result<Value> {
    let t = lua.create_table()?;
    t.set("score", score)?;
    t.set("name", format!("chrF{}{}", o.beta, "+".repeat(o.word_order)))?;
    Ok(Value::Table(t))
}

impl UserData for Stream {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method_mut("add", |_, this, (preds, refs): (Value, Value)| this.add(preds, refs));
        methods.add_method("compute", |lua, this, ()| this.compute(lua));
        methods.add_method_mut("reset", |_, this, ()| {
            this.gathered = this.empty.clone();
            Ok(())
        });
        methods.add_method("count", |_, this, ()| Ok(this.count()));
    }
}

fn stream(lua: &Lua, (name, opts): (String, Option<Table>)) -> mlua::Result<Stream> {
    let call = "metrics.stream";
    let no_options = |opts: &Option<Table>| if opts.is_some() { Err(misuse(call, format!("{name} takes no options"))) } else { Ok(()) };
    let class = |lua: &Lua, opts: Option<Table>| -> mlua::Result<ClassArgs> {
        let o: ClassArgs = options(lua, call, opts)?;
        o.average(call)?;
        o.labels(call)?;
        Ok(o)
    };
    let labels = |metric| Gathered::Labels(metric, Vec::new(), Vec::new());
    let gathered = match name.as_str() {
        "bleu" => Gathered::Bleu(options::<BleuArgs>(lua, call, opts)?.resolve(call, false)?, BleuStats::default(), 0),
        "chrf" => {
            let o = options::<ChrfArgs>(lua, call, opts)?.resolve();
            Gathered::Chrf(o, ChrfStats::new(&o).or_misuse(call)?, 0)
        }
        "rouge" => {
            let (names, mean) = options::<RougeArgs>(lua, call, opts)?.resolve(call)?;
            Gathered::Rouge(names, mean)
        }
        "accuracy" => {
            no_options(&opts)?;
            labels(LabelMetric::Accuracy)
        }
        "exact_match" => {
            no_options(&opts)?;
            Gathered::Texts(Vec::new(), Vec::new())
        }
        "precision" => labels(LabelMetric::Class(Pick::Precision, class(lua, opts)?)),
        "recall" => labels(LabelMetric::Class(Pick::Recall, class(lua, opts)?)),
        "f1" => labels(LabelMetric::Class(Pick::F, class(lua, opts)?)),
        "confusion_matrix" => labels(LabelMetric::Confusion(class(lua, opts)?)),
        "perplexity" => {
            no_options(&opts)?;
            Gathered::Perplexity(Perplexity::default())
        }
        other => return Err(misuse(call, format!("unknown metric '{other}' (bleu, chrf, rouge, accuracy, exact_match, precision, recall, f1, confusion_matrix, perplexity)"))),
    };
    Ok(Stream { empty: gathered.clone(), gathered })
}

pub fn create_table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("bleu", function(lua, "metrics.bleu", |lua, (hyps, refs, opts): (Value, Value, Option<Table>)| {
        let call = "metrics.bleu";
        let o: BleuArgs = options(lua, call, opts)?;
        let score = bleu::corpus_bleu(&strings(call, "hypotheses", &hyps)?, &streams(call, &refs)?, &o.resolve(call, false)?).or_misuse(call)?;
        bleu_table(lua, score)
    })?)?;
    t.set("sentence_bleu", function(lua, "metrics.sentence_bleu", |lua, (hyp, refs, opts): (String, Value, Option<Table>)| {
        let call = "metrics.sentence_bleu";
        let o: BleuArgs = options(lua, call, opts)?;
        bleu_table(lua, bleu::sentence_bleu(&hyp, &strings(call, "references", &refs)?, &o.resolve(call, true)?).or_misuse(call)?)
    })?)?;
    t.set("chrf", function(lua, "metrics.chrf", |lua, (hyps, refs, opts): (Value, Value, Option<Table>)| {
        let call = "metrics.chrf";
        let o = options::<ChrfArgs>(lua, call, opts)?.resolve();
        chrf_value(lua, chrf::corpus_chrf(&strings(call, "hypotheses", &hyps)?, &streams(call, &refs)?, &o).or_misuse(call)?, &o)
    })?)?;
    t.set("sentence_chrf", function(lua, "metrics.sentence_chrf", |lua, (hyp, refs, opts): (String, Value, Option<Table>)| {
        let call = "metrics.sentence_chrf";
        let o = options::<ChrfArgs>(lua, call, opts)?.resolve();
        chrf_value(lua, chrf::sentence_chrf(&hyp, &strings(call, "references", &refs)?, &o).or_misuse(call)?, &o)
    })?)?;
    t.set("rouge", function(lua, "metrics.rouge", |lua, (preds, refs, opts): (Value, Value, Option<Table>)| {
        let call = "metrics.rouge";
        let (names, mut mean) = options::<RougeArgs>(lua, call, opts)?.resolve(call)?;
        mean.add(&strings(call, "predictions", &preds)?, &item_references(call, &refs)?).or_misuse(call)?;
        rouge_table(lua, call, &names, &mean)
    })?)?;
    t.set("accuracy", function(lua, "metrics.accuracy", |_, (preds, refs): (Value, Value)| {
        let call = "metrics.accuracy";
        classification::accuracy(&labels(call, "predictions", &preds)?, &labels(call, "references", &refs)?).or_misuse(call)
    })?)?;
    t.set("exact_match", function(lua, "metrics.exact_match", |_, (preds, refs): (Value, Value)| {
        let call = "metrics.exact_match";
        classification::exact_match(&strings(call, "predictions", &preds)?, &strings(call, "references", &refs)?).or_misuse(call)
    })?)?;
    for (name, pick) in [("precision", Pick::Precision), ("recall", Pick::Recall), ("f1", Pick::F)] {
        let call: &'static str = match pick {
            Pick::Precision => "metrics.precision",
            Pick::Recall => "metrics.recall",
            Pick::F => "metrics.f1",
        };
        t.set(name, function(lua, call, move |lua, (preds, refs, opts): (Value, Value, Option<Table>)| {
            let o: ClassArgs = options(lua, call, opts)?;
            if o.beta.is_some() && !matches!(pick, Pick::F) {
                return Err(misuse(call, "beta is an option of f1"));
            }
            prf(lua, call, &labels(call, "predictions", &preds)?, &labels(call, "references", &refs)?, &o, pick, o.beta.unwrap_or(1.0))
        })?)?;
    }
    t.set("confusion_matrix", function(lua, "metrics.confusion_matrix", |lua, (preds, refs, opts): (Value, Value, Option<Table>)| {
        let call = "metrics.confusion_matrix";
        let o: ClassArgs = options(lua, call, opts)?;
        if o.average.is_some() || o.pos_label.is_some() || o.beta.is_some() {
            return Err(misuse(call, "confusion_matrix takes only the labels option"));
        }
        confusion(lua, call, &labels(call, "predictions", &preds)?, &labels(call, "references", &refs)?, o.labels(call)?)
    })?)?;
    t.set("perplexity", function(lua, "metrics.perplexity", |_, (losses, tokens): (Value, Value)| {
        let call = "metrics.perplexity";
        perplexity::perplexity(&numbers(call, "losses", &losses)?, &numbers(call, "token counts", &tokens)?).or_misuse(call)
    })?)?;
    t.set("stream", function(lua, "metrics.stream", stream)?)?;
    Ok(t)
}
