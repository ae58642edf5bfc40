//! One rank's share of a dataset, as PyTorch's DistributedSampler deals it: of `count` ranks,
//! rank `index` gets the examples at positions index, index + count, index + 2·count, … of each
//! epoch's order (so a shuffle with the same seed on every rank gives disjoint shares), and the
//! ranks that come up one short at the end take one from the start again (DistributedSampler's
//! padding), so that every rank has ceil(n / count) examples and the ranks stay in step.
//! Iterating a dataset in a data-parallel run deals this rank's share by itself
//! (`for_this_rank`).

use std::collections::VecDeque;

use anyhow::{bail, Result};

use super::dataset::{Dataset, Regroup};
use super::stream::Stream;
use super::value::Value;

pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    pub fn new(index: u64, count: u64) -> Result<Shard> {
        if count == 0 || index >= count {
            bail!("shard {index} of {count}: the shard must be below the count (0-based: rank, world size)");
        }
        Ok(Shard { index, count })
    }
}

impl Regroup for Shard {
    fn open(&self, inner: Box<dyn Stream>, _epoch: u64) -> Result<Box<dyn Stream>> {
        Ok(Box::new(ShardStream { inner, index: self.index, count: self.count, first: VecDeque::new(), seen: 0, given: 0, ended: false }))
    }

    fn len(&self, inner: u64) -> Option<u64> {
        Some(inner.div_ceil(self.count))
    }

    fn shards(&self) -> bool {
        true
    }
}

struct ShardStream {
    inner: Box<dyn Stream>,
    index: u64,
    count: u64,
    /// The first `count` examples of the pass (the padding comes from them).
    first: VecDeque<Value>,
    /// Examples read from the inner stream.
    seen: u64,
    given: u64,
    ended: bool,
}

impl Stream for ShardStream {
    fn next(&mut self) -> Result<Option<Value>> {
        while !self.ended {
            let Some(ex) = self.inner.next()? else {
                self.ended = true;
                break;
            };
            let at = self.seen;
            self.seen += 1;
            if at < self.count {
                self.first.push_back(ex.clone());
            }
            if at % self.count == self.index {
                self.given += 1;
                return Ok(Some(ex));
            }
        }
        // The pass had n = seen examples; every rank gives ceil(n / count).
        if self.seen == 0 || self.given >= self.seen.div_ceil(self.count) {
            return Ok(None);
        }
        let wrapped = self.index + self.given * self.count - self.seen;
        self.given += 1;
        Ok(self.first.get(wrapped as usize).cloned())
    }
}

/// What iterating `data` gives this rank: its share in a data-parallel run, unless the pipeline
/// already took one (`ds:shard`); all of it in a world of one.
pub fn for_this_rank(data: &Dataset) -> Result<Dataset> {
    let place = crate::dist::world::place()?;
    if place.size == 1 || data.is_sharded() {
        return Ok(data.clone());
    }
    data.shard(place.rank as u64, place.size as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    fn shares(n: i64, count: u64) -> Vec<Vec<i64>> {
        let data = Dataset::from_values((0..n).map(Value::Int).collect());
        (0..count)
            .map(|r| {
                let mut s = data.regroup(Rc::new(Shard::new(r, count).unwrap())).open(0).unwrap();
                let mut out = Vec::new();
                while let Some(Value::Int(i)) = s.next().unwrap() {
                    out.push(i);
                }
                out
            })
            .collect()
    }

    #[test]
    fn deals_as_distributed_sampler() {
        assert_eq!(shares(6, 2), vec![vec![0, 2, 4], vec![1, 3, 5]]);
        // 7 over 3: padded to 9 with examples 0 and 1 again.
        assert_eq!(shares(7, 3), vec![vec![0, 3, 6], vec![1, 4, 0], vec![2, 5, 1]]);
        assert_eq!(shares(1, 2), vec![vec![0], vec![0]]);
        assert!(Shard::new(2, 2).is_err());
    }
}
