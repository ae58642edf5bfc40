//! Keeps memory bounded without the user's help. Lua's collector sees a tensor userdata as a few
//! bytes and knows nothing of the storage behind it, so a loop that makes large temporaries
//! would grow until the collector happened to run (Torch7 users called `collectgarbage()` by
//! hand). We book every tensor userdata in a ledger that counts each storage once (views,
//! expanded tensors and repeated handles of one parameter are not new bytes) and run a full
//! collection whenever those bytes have doubled since the last one (and are past a floor); the
//! run loop also steps the collector between steps.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard};

use mlua::Lua;
use tch::Tensor;

use crate::tensor::ledger::{Entry, Ledger};

/// Below this many live bytes we never force a collection.
const FLOOR_BYTES: i64 = 64 << 20;

static LEDGER: Mutex<Option<Ledger>> = Mutex::new(None);
static AFTER_LAST_COLLECT: AtomicI64 = AtomicI64::new(0);

fn ledger() -> MutexGuard<'static, Option<Ledger>> {
    // A panic while holding the lock cannot leave the ledger half-updated in a way that matters
    // more than losing the count, so a poisoned lock is simply taken over.
    LEDGER.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Books a tensor that a userdata now holds.
pub fn track(t: &Tensor) -> Entry {
    ledger().get_or_insert_with(Ledger::default).add(t)
}

/// Releases what `track` booked.
pub fn release(entry: Entry) {
    if let Some(l) = ledger().as_mut() {
        l.remove(entry);
    }
}

/// Bytes of the distinct storages that live tensor userdata hold right now.
pub fn live_bytes() -> i64 {
    ledger().as_ref().map(Ledger::live_bytes).unwrap_or(0)
}

/// Runs a full collection if tensor memory has doubled since the last one.
pub fn collect_if_grown(lua: &Lua) -> mlua::Result<()> {
    let live = live_bytes();
    let limit = (2 * AFTER_LAST_COLLECT.load(Ordering::Relaxed)).max(FLOOR_BYTES);
    if live > limit {
        lua.gc_collect()?;
        AFTER_LAST_COLLECT.store(live_bytes(), Ordering::Relaxed);
    }
    Ok(())
}
