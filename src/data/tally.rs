//! What a cleaning step did in the last pass over its data (examples changed, removed, redacted
//! by kind), for `ds:report()` and `moontune data inspect`.

use std::cell::RefCell;

#[derive(Default)]
pub struct Tally(RefCell<Vec<(String, u64)>>);

impl Tally {
    /// Starts a new pass: every count back to zero (the names stay, so a report lists them all).
    pub fn reset(&self) {
        for (_, n) in self.0.borrow_mut().iter_mut() {
            *n = 0;
        }
    }

    pub fn add(&self, what: &str, n: u64) {
        let mut counts = self.0.borrow_mut();
        match counts.iter_mut().find(|(k, _)| k == what) {
            Some((_, c)) => *c += n,
            None => counts.push((what.to_string(), n)),
        }
    }

    /// Names the counts a report shows even when they stay zero.
    pub fn with(names: &[&str]) -> Tally {
        Tally(RefCell::new(names.iter().map(|n| (n.to_string(), 0)).collect()))
    }

    pub fn counts(&self) -> Vec<(String, u64)> {
        self.0.borrow().clone()
    }
}
