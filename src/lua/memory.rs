//! Keeps memory bounded without the user's help. Lua's collector sees a tensor userdata as a few
//! bytes and knows nothing of the storage behind it, so a loop that makes large temporaries
//! would grow until the collector happened to run (Torch7 users called `collectgarbage()` by
//! hand). We count the bytes held by live tensor userdata and run a full collection whenever
//! that count has doubled since the last one (and is past a floor); the run loop also steps the
//! collector between steps.

use std::sync::atomic::{AtomicI64, Ordering};

use mlua::Lua;

/// Below this many live bytes we never force a collection.
const FLOOR_BYTES: i64 = 64 << 20;

static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static AFTER_LAST_COLLECT: AtomicI64 = AtomicI64::new(0);

/// Records that a userdata now holds `bytes`.
pub fn track(bytes: i64) {
    LIVE_BYTES.fetch_add(bytes, Ordering::Relaxed);
}

/// Records that a userdata holding `bytes` was freed.
pub fn release(bytes: i64) {
    LIVE_BYTES.fetch_sub(bytes, Ordering::Relaxed);
}

/// Bytes held by live tensor userdata right now.
pub fn live_bytes() -> i64 {
    LIVE_BYTES.load(Ordering::Relaxed)
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
