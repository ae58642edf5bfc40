//! An iterator over a dataset for one or more epochs (or without end), with a position that can
//! be saved and restored: `(epoch, examples given out in that epoch)`. Restoring opens that
//! epoch's pass again and skips as many examples, which gives the same next example because a
//! dataset's passes are deterministic.

use anyhow::{bail, Result};

use super::dataset::Dataset;
use super::stream::Stream;
use super::value::Value;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Position {
    pub epoch: u64,
    pub index: u64,
}

pub struct DataIter {
    data: Dataset,
    /// None: without end.
    epochs: Option<u64>,
    at: Position,
    stream: Option<Box<dyn Stream>>,
    finished: bool,
}

impl DataIter {
    pub fn new(data: Dataset, epochs: Option<u64>) -> DataIter {
        DataIter { data, epochs, at: Position { epoch: 0, index: 0 }, stream: None, finished: epochs == Some(0) }
    }

    pub fn position(&self) -> Position {
        self.at
    }

    pub fn epochs(&self) -> Option<u64> {
        self.epochs
    }

    pub fn next(&mut self) -> Result<Option<Value>> {
        while !self.finished {
            if self.stream.is_none() {
                self.stream = Some(self.data.open(self.at.epoch)?);
            }
            if let Some(ex) = self.stream.as_mut().expect("opened above").next()? {
                self.at.index += 1;
                return Ok(Some(ex));
            }
            if self.at.index == 0 {
                self.finished = true;
                if self.at.epoch == 0 {
                    bail!("the dataset is empty");
                }
                bail!("epoch {} of the dataset is empty", self.at.epoch + 1);
            }
            self.stream = None;
            self.at = Position { epoch: self.at.epoch + 1, index: 0 };
            self.finished = self.epochs.is_some_and(|n| self.at.epoch >= n);
        }
        Ok(None)
    }

    /// Continues from `at`, as if the examples before it had been given out.
    pub fn seek(&mut self, at: Position) -> Result<()> {
        if let Some(n) = self.epochs {
            if at.epoch > n || (at.epoch == n && at.index > 0) {
                bail!("the position is in epoch {} but this iterator runs {n} epoch(s)", at.epoch + 1);
            }
        }
        let mut stream = self.data.open(at.epoch)?;
        let passed = stream.skip(at.index)?;
        if passed < at.index {
            bail!("the position is example {} of epoch {}, but that epoch has only {passed} examples (did the data change?)", at.index, at.epoch + 1);
        }
        self.stream = Some(stream);
        self.at = at;
        self.finished = self.epochs.is_some_and(|n| at.epoch >= n);
        Ok(())
    }
}
