//! Packing: tokenised documents (`input_ids`, `labels`) laid end to end in rows of a fixed length,
//! with `position_ids` starting again at 0 for each document. The models read a row's position
//! ids as document boundaries and attend only within a document, and the first token of each
//! document has label -100 (nothing before it in its document predicts it), so a packed row's loss
//! is the loss of its documents unpacked. A row's unused tail is padding (labels -100).

use std::collections::VecDeque;

use anyhow::{bail, Result};

use super::dataset::Regroup;
use super::stream::Stream;
use super::tokenize::IGNORE;
use super::value::{Record, Value};

#[derive(Clone, Debug)]
pub struct PackOptions {
    pub length: usize,
    pub pad_id: i64,
    /// Let a document that does not fit in what is left of a row continue in the next (its second
    /// part then starts a new document); otherwise it starts a new row.
    pub split: bool,
    /// Drop a last row that is not full.
    pub drop_last: bool,
}

pub struct Packer(pub PackOptions);

impl Regroup for Packer {
    fn open(&self, inner: Box<dyn Stream>, _epoch: u64) -> Result<Box<dyn Stream>> {
        Ok(Box::new(PackStream { inner, o: self.0.clone(), row: Row::default(), ready: VecDeque::new(), index: 0, done: false }))
    }

    fn len(&self, _inner: u64) -> Option<u64> {
        None
    }
}

#[derive(Default)]
struct Row {
    ids: Vec<i64>,
    labels: Vec<i64>,
    positions: Vec<i64>,
}

impl Row {
    fn push_document(&mut self, ids: &[i64], labels: &[i64]) {
        self.ids.extend_from_slice(ids);
        self.labels.push(IGNORE);
        self.labels.extend_from_slice(&labels[1..]);
        self.positions.extend(0..ids.len() as i64);
    }

    fn finish(mut self, length: usize, pad_id: i64) -> Value {
        let pad = length - self.ids.len();
        self.ids.extend(std::iter::repeat_n(pad_id, pad));
        self.labels.extend(std::iter::repeat_n(IGNORE, pad));
        self.positions.extend(0..pad as i64);
        Value::Record(Record(vec![
            ("input_ids".into(), Value::ids(self.ids)),
            ("labels".into(), Value::ids(self.labels)),
            ("position_ids".into(), Value::ids(self.positions)),
        ]))
    }
}

struct PackStream {
    inner: Box<dyn Stream>,
    o: PackOptions,
    row: Row,
    ready: VecDeque<Value>,
    index: u64,
    done: bool,
}

impl PackStream {
    fn document(&self, ex: &Value) -> Result<(Vec<i64>, Vec<i64>)> {
        let ids = ex.field("input_ids", self.index)?;
        let Some(ids) = ids.as_ids() else { bail!("example {}: input_ids must be a list of token ids, got a {}", self.index + 1, ids.type_name()) };
        let labels = match ex.as_record().and_then(|r| r.get("labels")) {
            None => ids.clone(),
            Some(l) => match l.as_ids() {
                Some(l) if l.len() == ids.len() => l,
                Some(l) => bail!("example {}: {} labels for {} input_ids", self.index + 1, l.len(), ids.len()),
                None => bail!("example {}: labels must be a list of token ids, got a {}", self.index + 1, l.type_name()),
            },
        };
        Ok((ids, labels))
    }

    fn flush(&mut self) {
        if !self.row.ids.is_empty() {
            let row = std::mem::take(&mut self.row);
            self.ready.push_back(row.finish(self.o.length, self.o.pad_id));
        }
    }

    /// Takes in one more document.
    fn add(&mut self, mut ids: Vec<i64>, mut labels: Vec<i64>) {
        let length = self.o.length;
        if !self.o.split {
            ids.truncate(length);
            labels.truncate(length);
            if self.row.ids.len() + ids.len() > length {
                self.flush();
            }
            self.row.push_document(&ids, &labels);
            return;
        }
        let mut at = 0;
        while at < ids.len() {
            let room = length - self.row.ids.len();
            let end = (at + room).min(ids.len());
            self.row.push_document(&ids[at..end], &labels[at..end]);
            at = end;
            if self.row.ids.len() == length {
                self.flush();
            }
        }
    }
}

impl Stream for PackStream {
    fn next(&mut self) -> Result<Option<Value>> {
        while self.ready.is_empty() && !self.done {
            match self.inner.next()? {
                Some(ex) => {
                    let (ids, labels) = self.document(&ex)?;
                    self.index += 1;
                    if !ids.is_empty() {
                        self.add(ids, labels);
                    }
                    if self.row.ids.len() == self.o.length {
                        self.flush();
                    }
                }
                None => {
                    self.done = true;
                    if !self.o.drop_last {
                        self.flush();
                    }
                }
            }
        }
        Ok(self.ready.pop_front())
    }
}
