//! Data parallelism over a set of trainable parameters, as PyTorch's DDP does it: rank 0's
//! values are broadcast once, then every backward averages the gradients across ranks through
//! c10d's Reducer, in buckets whose all-reduce starts while backward goes on. The backward in
//! `tensor::autograd` arms every live set first (`before_backward`); `set_sync(false)` leaves
//! gradients local, for accumulation (`no_sync`). In a world of one nothing is armed or sent.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use anyhow::{anyhow, bail, Result};
use tch::{Kind, Tensor};

use super::c10d::Reducer;
use super::world::{names_hash, world, World};

struct Shared {
    reducer: Mutex<Reducer>,
    sync: AtomicBool,
    world: Arc<World>,
}

/// A set of parameters kept equal across ranks.
pub struct DataParallel {
    shared: Option<Arc<Shared>>,
    /// How many parameters and values it covers.
    pub params: usize,
    pub elements: i64,
}

static ACTIVE: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

/// Makes `params` data-parallel: checks every rank has the same list (count, shapes, dtypes),
/// gives every rank rank 0's values, and arms gradient averaging. `bucket_bytes` caps a bucket
/// (DDP's bucket_cap_mb); `find_unused` lets a backward leave some parameters without a
/// gradient (their share is then zero), at the cost of walking the graph.
pub fn data_parallel(params: &[Tensor], bucket_bytes: i64, find_unused: bool) -> Result<DataParallel> {
    if params.is_empty() {
        bail!("no parameters to make data-parallel (is anything trainable?)");
    }
    for (i, p) in params.iter().enumerate() {
        if !p.requires_grad() || !p.is_leaf() {
            bail!("parameter {} is not a trainable leaf (it must require grad and not be computed from others)", i + 1);
        }
    }
    if bucket_bytes <= 0 {
        bail!("bucket size must be positive, got {bucket_bytes} bytes");
    }
    let elements = params.iter().map(Tensor::numel).sum::<usize>() as i64;
    let Some(world) = world()? else {
        return Ok(DataParallel { shared: None, params: params.len(), elements });
    };
    let signature: Vec<String> = params.iter().map(|p| format!("{:?}{:?}", p.size(), p.kind())).collect();
    world.agree(&[params.len() as i64, elements, names_hash(signature.iter().map(String::as_str))], "the trainable parameters (their count, shapes or dtypes differ)")?;
    broadcast_values(&world, params)?;
    let reducer = Reducer::new(&world.group, &params.iter().collect::<Vec<_>>(), bucket_bytes, find_unused)?;
    let shared = Arc::new(Shared { reducer: Mutex::new(reducer), sync: AtomicBool::new(true), world: world.clone() });
    let mut active = ACTIVE.lock().map_err(|_| anyhow!("the data-parallel registry is poisoned"))?;
    active.retain(|w| w.strong_count() > 0);
    active.push(Arc::downgrade(&shared));
    Ok(DataParallel { shared: Some(shared), params: params.len(), elements })
}

/// Rank 0's parameter values on every rank: one broadcast per dtype, of all of them flattened.
fn broadcast_values(world: &World, params: &[Tensor]) -> Result<()> {
    let mut kinds: Vec<Kind> = Vec::new();
    for p in params {
        if !kinds.contains(&p.kind()) {
            kinds.push(p.kind());
        }
    }
    tch::no_grad(|| -> Result<()> {
        for kind in kinds {
            let same: Vec<Tensor> = params.iter().filter(|p| p.kind() == kind).map(|p| p.detach()).collect();
            let flat = Tensor::f_cat(&same.iter().map(|p| p.reshape([-1])).collect::<Vec<_>>(), 0)?;
            world.broadcast(&flat, 0)?;
            let mut at = 0i64;
            for p in &same {
                let n = p.numel() as i64;
                p.shallow_clone().f_copy_(&flat.narrow(0, at, n).view(p.size().as_slice()))?;
                at += n;
            }
        }
        Ok(())
    })
}

impl DataParallel {
    /// Whether backward averages gradients (false inside `no_sync`); returns the previous value.
    pub fn set_sync(&self, on: bool) -> bool {
        self.shared.as_ref().map(|s| s.sync.swap(on, Ordering::SeqCst)).unwrap_or(true)
    }

    /// Whether gradients travel at all (false in a world of one).
    pub fn is_distributed(&self) -> bool {
        self.shared.is_some()
    }
}

fn live() -> Result<Vec<Arc<Shared>>> {
    let Ok(mut active) = ACTIVE.lock() else { bail!("the data-parallel registry is poisoned") };
    active.retain(|w| w.strong_count() > 0);
    Ok(active.iter().filter_map(Weak::upgrade).collect())
}

/// A backward that failed while data-parallel gradients were being averaged, named as a
/// collective's failure (this rank, and the lost rank when the launcher told which).
pub fn backward_failed(error: anyhow::Error) -> anyhow::Error {
    match live().ok().and_then(|l| l.into_iter().find(|s| s.sync.load(Ordering::SeqCst))) {
        Some(shared) => shared.world.failed("the gradient all-reduce in backward", error),
        None => error,
    }
}

/// Arms every live data-parallel set that syncs for the backward of `outputs`.
pub fn before_backward(outputs: &[&Tensor]) -> Result<()> {
    let live = live()?;
    for shared in live.iter().filter(|s| s.sync.load(Ordering::SeqCst)) {
        let reducer = shared.reducer.lock().map_err(|_| anyhow!("a data-parallel reducer is poisoned"))?;
        reducer.prepare(outputs).map_err(|e| anyhow!("data-parallel backward: {e:#}"))?;
    }
    Ok(())
}
