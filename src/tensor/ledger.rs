//! A ledger of the memory that a set of tensor handles keeps alive, counted by storage: views,
//! expanded tensors and repeated handles of one parameter share a storage and count once. The
//! Lua bindings keep one for the tensors Lua holds, to decide when to run the collector.

use std::collections::HashMap;

use tch::Tensor;

use super::shim::identity;

/// Where a handle's bytes were booked (its storage), so that releasing it finds the entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    storage: usize,
}

#[derive(Default)]
pub struct Ledger {
    /// storage → (handles holding it, its bytes when first seen)
    storages: HashMap<usize, (u32, i64)>,
    live: i64,
}

impl Ledger {
    /// Books a handle of `t`; its storage's bytes count only if no other handle holds it.
    /// A tensor without storage (undefined, or a kind libtorch stores elsewhere) books nothing.
    pub fn add(&mut self, t: &Tensor) -> Entry {
        let Ok(id) = identity(t) else { return Entry::default() };
        if id.storage == 0 {
            return Entry::default();
        }
        let slot = self.storages.entry(id.storage).or_insert((0, id.storage_bytes));
        if slot.0 == 0 {
            self.live += slot.1;
        }
        slot.0 += 1;
        Entry { storage: id.storage }
    }

    /// Releases a handle booked by `add`.
    pub fn remove(&mut self, entry: Entry) {
        if entry.storage == 0 {
            return;
        }
        if let Some(slot) = self.storages.get_mut(&entry.storage) {
            slot.0 -= 1;
            if slot.0 == 0 {
                self.live -= slot.1;
                self.storages.remove(&entry.storage);
            }
        }
    }

    /// Bytes of the distinct storages booked now.
    pub fn live_bytes(&self) -> i64 {
        self.live
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn views_and_copies_of_one_storage_count_once() {
        let mut ledger = Ledger::default();
        let a = Tensor::zeros([256], (Kind::Float, Device::Cpu));
        let e1 = ledger.add(&a);
        let e2 = ledger.add(&a.shallow_clone());
        let e3 = ledger.add(&a.narrow(0, 0, 10));
        let e4 = ledger.add(&a.unsqueeze(0).expand([8, 256], false));
        assert_eq!(ledger.live_bytes(), 1024);
        let b = Tensor::zeros([10], (Kind::Float, Device::Cpu));
        let e5 = ledger.add(&b);
        assert_eq!(ledger.live_bytes(), 1064);
        for e in [e1, e2, e3] {
            ledger.remove(e);
        }
        assert_eq!(ledger.live_bytes(), 1064);
        ledger.remove(e4);
        ledger.remove(e5);
        assert_eq!(ledger.live_bytes(), 0);
    }
}
