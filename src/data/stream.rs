//! One pass over a dataset: `next` gives the examples in order, `skip` passes over some without
//! making them where the dataset can (a map need not call its function for examples it skips).

use anyhow::Result;

use super::value::Value;

pub trait Stream {
    fn next(&mut self) -> Result<Option<Value>>;

    /// Passes over up to `n` examples; returns how many there were.
    fn skip(&mut self, n: u64) -> Result<u64> {
        let mut k = 0;
        while k < n && self.next()?.is_some() {
            k += 1;
        }
        Ok(k)
    }
}
