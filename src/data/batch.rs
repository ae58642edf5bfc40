//! Batching: consecutive examples collated into one, padding each batch only to its own longest
//! example (dynamic padding). Record fields of numbers become tensors, fields of token-id lists
//! padded (batch, length) tensors — `input_ids` with the pad id, `labels` with -100, and an
//! `attention_mask` added where there is none — and other fields lists. With `bucket = k`, windows
//! of k batches are sorted by length before they are cut, so a batch holds examples of similar
//! length, and the batches of a window come out in a seeded random order.

use std::collections::VecDeque;

use anyhow::{anyhow, bail, Result};
use tch::{Kind, Tensor};

use super::dataset::Regroup;
use super::rng::Rng;
use super::stream::Stream;
use super::value::{Record, Value};

#[derive(Clone, Debug)]
pub struct BatchOptions {
    pub size: usize,
    pub drop_last: bool,
    /// What `input_ids` (and any field without its own pad value) is padded with.
    pub pad_id: i64,
    /// Pad values by field.
    pub pad: Vec<(String, f64)>,
    pub left: bool,
    pub multiple_of: Option<usize>,
    /// Windows of this many batches sorted by length.
    pub bucket: Option<usize>,
    /// The field whose length buckets sort by.
    pub by: String,
    pub seed: u64,
}

impl BatchOptions {
    fn pad_value(&self, field: &str) -> f64 {
        if let Some((_, v)) = self.pad.iter().find(|(k, _)| k == field) {
            return *v;
        }
        match field {
            "labels" => -100.0,
            "attention_mask" | "position_ids" | "token_type_ids" => 0.0,
            _ => self.pad_id as f64,
        }
    }
}

pub struct Batcher(pub BatchOptions);

impl Regroup for Batcher {
    fn open(&self, inner: Box<dyn Stream>, epoch: u64) -> Result<Box<dyn Stream>> {
        Ok(Box::new(BatchStream { inner, o: self.0.clone(), ready: VecDeque::new(), rng: Rng::new(self.0.seed, epoch), done: false }))
    }

    fn len(&self, inner: u64) -> Option<u64> {
        let size = self.0.size as u64;
        Some(if self.0.drop_last { inner / size } else { inner.div_ceil(size) })
    }
}

struct BatchStream {
    inner: Box<dyn Stream>,
    o: BatchOptions,
    ready: VecDeque<Vec<Value>>,
    rng: Rng,
    done: bool,
}

impl BatchStream {
    fn pull(&mut self, n: usize) -> Result<Vec<Value>> {
        let mut items = Vec::with_capacity(n);
        while items.len() < n {
            match self.inner.next()? {
                Some(ex) => items.push(ex),
                None => {
                    self.done = true;
                    break;
                }
            }
        }
        Ok(items)
    }

    /// Groups of examples for the next batches (one, or a bucket's worth).
    fn refill(&mut self) -> Result<()> {
        let size = self.o.size;
        let window = size * self.o.bucket.unwrap_or(1);
        let mut items = self.pull(window)?;
        if self.o.bucket.is_some() {
            let mut keyed: Vec<(usize, Value)> = items.into_iter().map(|v| (length(&v, &self.o.by), v)).collect();
            keyed.sort_by_key(|(l, _)| *l);
            items = keyed.into_iter().map(|(_, v)| v).collect();
        }
        let mut groups: Vec<Vec<Value>> = Vec::new();
        let mut it = items.into_iter().peekable();
        while it.peek().is_some() {
            let group: Vec<Value> = it.by_ref().take(size).collect();
            if group.len() == size || !self.o.drop_last {
                groups.push(group);
            }
        }
        if self.o.bucket.is_some() {
            self.rng.shuffle(&mut groups);
        }
        self.ready.extend(groups);
        Ok(())
    }
}

impl Stream for BatchStream {
    fn next(&mut self) -> Result<Option<Value>> {
        if self.ready.is_empty() && !self.done {
            self.refill()?;
        }
        match self.ready.pop_front() {
            Some(group) => collate(group, &self.o).map(Some),
            None => Ok(None),
        }
    }

    fn skip(&mut self, n: u64) -> Result<u64> {
        let mut k = 0;
        while k < n {
            if self.ready.is_empty() && !self.done {
                self.refill()?;
            }
            if self.ready.pop_front().is_none() {
                break;
            }
            k += 1;
        }
        Ok(k)
    }
}

/// The length buckets sort by: of a list or string field, or of the example itself.
fn length(v: &Value, by: &str) -> usize {
    let v = v.as_record().and_then(|r| r.get(by)).unwrap_or(v);
    match v {
        Value::List(l) => l.len(),
        Value::Str(s) => s.len(),
        Value::Tensor(t) => t.size().first().copied().unwrap_or(0) as usize,
        _ => 0,
    }
}

/// One batch from its examples.
pub fn collate(items: Vec<Value>, o: &BatchOptions) -> Result<Value> {
    let Some(Value::Record(first)) = items.first() else { return column(items, "", o) };
    let names: Vec<String> = first.keys().map(str::to_string).collect();
    let mut columns: Vec<Vec<Value>> = vec![Vec::with_capacity(items.len()); names.len()];
    for (i, item) in items.into_iter().enumerate() {
        let Value::Record(mut r) = item else { bail!("example {} of the batch is a {}, the first is a record", i + 1, item.type_name()) };
        if r.0.len() != names.len() || r.0.iter().zip(&names).any(|((k, _), n)| k != n) {
            let fields = r.keys().collect::<Vec<_>>().join(", ");
            if let Some(missing) = names.iter().find(|n| r.get(n).is_none()) {
                bail!("example {} of the batch has no field '{missing}' (its fields: {fields})", i + 1);
            }
            if r.0.len() != names.len() {
                bail!("example {} of the batch has the fields {fields}, the first has {}", i + 1, names.join(", "));
            }
            r.0.sort_by_key(|(k, _)| names.iter().position(|n| n == k));
        }
        for (c, (_, v)) in columns.iter_mut().zip(r.0) {
            c.push(v);
        }
    }
    let mut out = Record::default();
    let mut mask = None;
    for (name, values) in names.iter().zip(columns) {
        if name == "input_ids" && !names.iter().any(|n| n == "attention_mask") {
            if let Some(lengths) = values.iter().map(|v| v.as_ids().map(|l| l.len())).collect::<Option<Vec<usize>>>() {
                mask = Some(mask_of(&lengths, o)?);
            }
        }
        out.insert(name, column(values, name, o)?);
    }
    if let Some(m) = mask {
        out.insert("attention_mask", Value::Tensor(m));
    }
    Ok(Value::Record(out))
}

/// The padded length for a batch whose longest example is `longest`.
fn padded_length(longest: usize, o: &BatchOptions) -> usize {
    match o.multiple_of {
        Some(m) if m > 0 => longest.div_ceil(m) * m,
        _ => longest,
    }
}

fn mask_of(lengths: &[usize], o: &BatchOptions) -> Result<Tensor> {
    let width = padded_length(lengths.iter().copied().max().unwrap_or(0), o);
    let mut flat = Vec::with_capacity(lengths.len() * width);
    for &l in lengths {
        let (ones, zeros) = (l, width - l);
        if o.left {
            flat.extend(std::iter::repeat_n(0i64, zeros).chain(std::iter::repeat_n(1, ones)));
        } else {
            flat.extend(std::iter::repeat_n(1i64, ones).chain(std::iter::repeat_n(0, zeros)));
        }
    }
    Ok(Tensor::from_slice(&flat).f_view([lengths.len() as i64, width as i64])?)
}

/// One field of the batch (or the examples themselves, when they are not records).
fn column(values: Vec<Value>, name: &str, o: &BatchOptions) -> Result<Value> {
    let what = if name.is_empty() { "the examples".to_string() } else { format!("the field '{name}'") };
    if values.iter().all(|v| matches!(v, Value::Int(_))) {
        let ints: Vec<i64> = values.iter().map(|v| if let Value::Int(i) = v { *i } else { 0 }).collect();
        return Ok(Value::Tensor(Tensor::from_slice(&ints)));
    }
    if values.iter().all(|v| matches!(v, Value::Int(_) | Value::Float(_))) {
        let xs: Vec<f32> = values.iter().map(|v| number(v) as f32).collect();
        return Ok(Value::Tensor(Tensor::from_slice(&xs)));
    }
    if values.iter().all(|v| matches!(v, Value::Bool(_))) {
        let bs: Vec<bool> = values.iter().map(|v| matches!(v, Value::Bool(true))).collect();
        return Ok(Value::Tensor(Tensor::from_slice(&bs)));
    }
    if values.iter().all(|v| matches!(v, Value::List(l) if l.iter().all(|x| matches!(x, Value::Int(_) | Value::Float(_))))) {
        let rows: Vec<&Vec<Value>> = values.iter().map(|v| if let Value::List(l) = v { l } else { unreachable!("checked above") }).collect();
        let floats = rows.iter().any(|r| r.iter().any(|x| matches!(x, Value::Float(_))));
        let width = padded_length(rows.iter().map(|r| r.len()).max().unwrap_or(0), o);
        let pad = o.pad_value(name);
        let mut flat = Vec::with_capacity(rows.len() * width);
        for r in &rows {
            let fill = std::iter::repeat_n(pad, width - r.len());
            let row = r.iter().map(number);
            if o.left {
                flat.extend(fill.chain(row));
            } else {
                flat.extend(row.chain(fill));
            }
        }
        let t = Tensor::from_slice(&flat).f_view([rows.len() as i64, width as i64])?;
        return Ok(Value::Tensor(if floats { t.f_to_kind(Kind::Float)? } else { t.f_to_kind(Kind::Int64)? }));
    }
    if values.iter().all(|v| matches!(v, Value::Tensor(_))) {
        let ts: Vec<&Tensor> = values.iter().map(|v| if let Value::Tensor(t) = v { t } else { unreachable!("checked above") }).collect();
        let shape = ts[0].size();
        if ts.iter().all(|t| t.size() == shape) {
            return Ok(Value::Tensor(Tensor::f_stack(&ts, 0)?));
        }
        if ts.iter().all(|t| t.dim() == 1) {
            let width = padded_length(ts.iter().map(|t| t.size()[0] as usize).max().unwrap_or(0), o) as i64;
            let pad = o.pad_value(name);
            let padded: Vec<Tensor> = ts
                .iter()
                .map(|t| {
                    let extra = width - t.size()[0];
                    let (l, r) = if o.left { (extra, 0) } else { (0, extra) };
                    t.f_pad([l, r], "constant", Some(pad))
                })
                .collect::<Result<_, _>>()?;
            return Ok(Value::Tensor(Tensor::f_stack(&padded, 0)?));
        }
        bail!("{what}: tensors of different shapes cannot be stacked: {:?} and {:?}", shape, ts.iter().map(|t| t.size()).find(|s| *s != shape).unwrap_or_default());
    }
    if values.iter().any(|v| matches!(v, Value::Tensor(_))) {
        let kinds: Vec<&str> = values.iter().map(Value::type_name).collect();
        return Err(anyhow!("{what} mixes tensors with other values ({})", kinds.join(", ")));
    }
    Ok(Value::List(values))
}

fn number(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Float(x) => *x,
        _ => 0.0,
    }
}
