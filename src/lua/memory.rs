//! Keeps memory bounded without the user's help. Lua's collector sees a tensor userdata as a few
//! bytes and knows nothing of the storage behind it, so a loop that makes large temporaries
//! would grow until the collector happened to run (Torch7 users called `collectgarbage()` by
//! hand). We book every tensor userdata in a ledger that counts each storage once (views,
//! expanded tensors and repeated handles of one parameter are not new bytes) and run a full
//! collection whenever those bytes have doubled since the last one (and are past a floor); a
//! model's forward pass collects first when the previous training step's outputs may be
//! garbage; the run loop also steps the collector between steps.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard};

use mlua::Lua;
use tch::Tensor;

use crate::tensor::ledger::{Entry, Ledger};

/// Below this many live bytes we never force a collection.
const FLOOR_BYTES: i64 = 64 << 20;
/// Before a model's forward pass: the floor for tensors left over since the last pass.
const FORWARD_FLOOR_BYTES: i64 = 16 << 20;

static LEDGER: Mutex<Option<Ledger>> = Mutex::new(None);
static AFTER_LAST_COLLECT: AtomicI64 = AtomicI64::new(0);
static AFTER_FORWARD_COLLECT: AtomicI64 = AtomicI64::new(0);
/// Whether a forward pass with gradients on ran since the last collection before a forward.
static GRAPH_SINCE_COLLECT: AtomicBool = AtomicBool::new(false);

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

/// Before a model's forward pass. A training step's outputs (loss, logits) are garbage by the
/// next step's forward, but Lua's collector sees neither the size of their tensors nor the
/// autograd graph behind them (its nodes, and the heap they pin between freed activations), so
/// left alone they pile up: six LoRA steps of the benchmark's model (bench/lora.lua) grew to
/// 625 MiB that way and stayed at 351 MiB with a collection before each forward. As Python's
/// reference counting frees them at once, a full collection runs before a forward with
/// gradients on when an earlier one built a graph since — cheap for a recipe's Lua heap (0.015
/// ms for the benchmark's, 3.6 ms with 200,000 strings in tables) — and before any forward when
/// tensor userdata hold more than twice what they held after the last such collection (and
/// more than 16 MiB).
pub fn collect_before_forward(lua: &Lua) -> mlua::Result<()> {
    let grad_on = crate::tensor::shim::grad_enabled();
    let graph_before = GRAPH_SINCE_COLLECT.swap(grad_on, Ordering::Relaxed);
    let live = live_bytes();
    if (grad_on && graph_before) || live > (2 * AFTER_FORWARD_COLLECT.load(Ordering::Relaxed)).max(FORWARD_FLOOR_BYTES) {
        lua.gc_collect()?;
        let after = live_bytes();
        AFTER_FORWARD_COLLECT.store(after, Ordering::Relaxed);
        AFTER_LAST_COLLECT.store(after, Ordering::Relaxed);
    }
    Ok(())
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
