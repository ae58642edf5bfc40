//! This process's place among the ranks of a data-parallel run, and the collectives on it.
//!
//! The place comes from the environment torchrun sets (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
//! `MASTER_ADDR`, `MASTER_PORT`), which `moontune launch` sets too (under Slurm's srun,
//! `SLURM_PROCID`, `SLURM_NTASKS` and `SLURM_LOCALID` stand in for the first three). Without it (or with a world
//! size of 1 and no backend named) the run is a world of one: every collective returns at once, its result the
//! tensor as it was. With it, `join` meets the other ranks at the master's TCP store and makes
//! the Gloo process group, adding NCCL for CUDA tensors (`MOONTUNE_DIST_BACKEND`: auto, the
//! default, uses it where CUDA is available and the build has it; gloo never; nccl always, or
//! fails). The store is served by the launcher when one says so
//! (`TORCHELASTIC_USE_AGENT_STORE=True`, as torchrun's agent and `moontune launch` do), or
//! else by rank 0. The launcher also writes which rank it lost under `lost`, so that the others'
//! errors can name it.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tch::{Kind, Tensor};

use super::c10d::{Group, ReduceOp, Store};

/// The store key under which a launcher writes which rank it lost and how.
pub const LOST_KEY: &str = "lost";
/// The prefix of this program's keys in the store (torchrun's agent keeps keys of its own there).
pub const STORE_PREFIX: &str = "moontune";
/// How long a collective or the rendezvous waits for the other ranks by default (seconds).
pub const DEFAULT_TIMEOUT_S: f64 = 300.0;

/// Where this process stands: rank, world size and its rank on this machine.
#[derive(Clone, Debug, PartialEq)]
pub struct Place {
    pub rank: usize,
    pub size: usize,
    pub local_rank: usize,
    pub master_addr: String,
    pub master_port: u16,
    /// The store is served by a launcher (not by rank 0).
    pub agent_store: bool,
    pub timeout: Duration,
    /// What carries collectives on CUDA tensors (`MOONTUNE_DIST_BACKEND`).
    pub backend: Backend,
}

/// What carries a group's collectives on CUDA tensors; CPU tensors always go through Gloo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// NCCL where CUDA is available and this build has it, else Gloo (torchrun's default).
    Auto,
    /// Gloo, CUDA tensors staged through host memory.
    Gloo,
    /// NCCL, an error where it cannot be had.
    Nccl,
}

impl Backend {
    pub fn parse(name: &str) -> Result<Backend> {
        Ok(match name.trim().to_ascii_lowercase().as_str() {
            "auto" => Backend::Auto,
            "gloo" => Backend::Gloo,
            "nccl" => Backend::Nccl,
            other => bail!("unknown backend '{other}': expected auto, gloo or nccl"),
        })
    }
}

impl Place {
    /// The place the environment gives; a world of one when it gives none.
    pub fn from_env() -> Result<Place> {
        Place::from_vars(|name| std::env::var(name).ok())
    }

    fn from_vars(env: impl Fn(&str) -> Option<String>) -> Result<Place> {
        // Slurm's srun gives its own names; torchrun's win where both are set.
        let var = |name: &str| {
            let slurm = match name {
                "RANK" => "SLURM_PROCID",
                "WORLD_SIZE" => "SLURM_NTASKS",
                "LOCAL_RANK" => "SLURM_LOCALID",
                _ => "",
            };
            env(name).or_else(|| if slurm.is_empty() { None } else { env(slurm) })
        };
        let number = |name: &str| -> Result<Option<usize>> {
            var(name).map(|v| v.trim().parse::<usize>().map_err(|_| anyhow!("{name}={v:?} is not a whole number"))).transpose()
        };
        let size = number("WORLD_SIZE")?.unwrap_or(1);
        let rank = number("RANK")?.unwrap_or(0);
        if size == 0 {
            bail!("WORLD_SIZE=0: a run needs at least one rank");
        }
        if rank >= size {
            bail!("RANK={rank} is not below WORLD_SIZE={size}");
        }
        let timeout = match var("MOONTUNE_DIST_TIMEOUT") {
            Some(v) => v.trim().parse::<f64>().ok().filter(|s| *s > 0.0).ok_or_else(|| anyhow!("MOONTUNE_DIST_TIMEOUT={v:?} must be a positive number of seconds"))?,
            None => DEFAULT_TIMEOUT_S,
        };
        let master_port = match var("MASTER_PORT") {
            Some(p) => p.trim().parse::<u16>().map_err(|_| anyhow!("MASTER_PORT={p:?} is not a port number"))?,
            None if size > 1 => bail!("WORLD_SIZE={size} but MASTER_PORT is not set: set MASTER_ADDR and MASTER_PORT (or start the run with moontune launch)"),
            None => 0,
        };
        let backend = match var("MOONTUNE_DIST_BACKEND") {
            Some(b) => Backend::parse(&b).with_context(|| format!("MOONTUNE_DIST_BACKEND={b:?}"))?,
            None => Backend::Auto,
        };
        Ok(Place {
            backend,
            rank,
            size,
            local_rank: number("LOCAL_RANK")?.unwrap_or(rank),
            master_addr: var("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into()),
            master_port,
            agent_store: var("TORCHELASTIC_USE_AGENT_STORE").is_some_and(|v| v.eq_ignore_ascii_case("true")),
            timeout: Duration::from_secs_f64(timeout),
        })
    }
}

/// A joined world: more than one rank, or one with a named backend.
pub struct World {
    pub place: Place,
    pub store: Store,
    pub group: Group,
}

/// The operation a collective combines values with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Sum,
    Avg,
    Max,
    Min,
}

impl Op {
    pub fn parse(name: &str) -> Result<Op> {
        Ok(match name {
            "sum" => Op::Sum,
            "avg" | "mean" => Op::Avg,
            "max" => Op::Max,
            "min" => Op::Min,
            other => bail!("unknown op '{other}': expected sum, avg, max or min"),
        })
    }

    fn reduce(self) -> ReduceOp {
        match self {
            Op::Sum | Op::Avg => ReduceOp::Sum,
            Op::Max => ReduceOp::Max,
            Op::Min => ReduceOp::Min,
        }
    }
}

static PLACE: OnceLock<std::result::Result<Place, String>> = OnceLock::new();
static WORLD: Mutex<Option<Arc<World>>> = Mutex::new(None);

/// This process's place (read from the environment once).
pub fn place() -> Result<Place> {
    PLACE.get_or_init(|| Place::from_env().map_err(|e| format!("{e:#}"))).clone().map_err(|e| anyhow!(e))
}

/// The joined world, joining it on first use; None in a world of one (without a named backend).
pub fn world() -> Result<Option<Arc<World>>> {
    let place = place()?;
    // A world of one has no group, unless a backend was named: then its collectives go through
    // that backend, as a check of it on one machine with one GPU.
    if place.size == 1 && place.backend == Backend::Auto {
        return Ok(None);
    }
    let mut slot = WORLD.lock().map_err(|_| anyhow!("the distributed state is poisoned"))?;
    if let Some(w) = slot.as_ref() {
        return Ok(Some(w.clone()));
    }
    let world = Arc::new(join(place)?);
    *slot = Some(world.clone());
    Ok(Some(world))
}

/// Meets the other ranks: the store, then the process group.
fn join(place: Place) -> Result<World> {
    if !super::c10d::has_gloo() {
        bail!("this moontune was built without Gloo's headers (Debian's libgloo-dev), so it cannot run on {} ranks; run `source tools/env.sh` (it installs them) and rebuild", place.size);
    }
    let timeout_ms = place.timeout.as_millis() as i64;
    let server = place.rank == 0 && !place.agent_store;
    let store = Store::new(&place.master_addr, place.master_port, server, place.size, timeout_ms, STORE_PREFIX)
        .with_context(|| format!("rank {} could not reach the rendezvous at {}:{}", place.rank, place.master_addr, place.master_port))?;
    let group = Group::new(&store, place.rank, place.size, timeout_ms).with_context(|| format!("rank {} could not join the {} ranks at {}:{}", place.rank, place.size, place.master_addr, place.master_port))?;
    let nccl = match place.backend {
        Backend::Gloo => false,
        Backend::Nccl => true,
        Backend::Auto => super::nccl::usable().is_ok(),
    };
    if nccl {
        group.add_nccl(&store, place.rank, place.size, timeout_ms).with_context(|| format!("rank {} could not set up NCCL for CUDA tensors", place.rank))?;
    }
    Ok(World { place, store, group })
}

impl World {
    /// Names a failed collective: the operation, this rank, and the lost rank when the launcher
    /// told which.
    pub fn failed(&self, operation: &str, error: anyhow::Error) -> anyhow::Error {
        let lost = self.lost().map(|l| format!("; {l}")).unwrap_or_default();
        anyhow!("{operation} failed on rank {} of {}: {error:#}{lost}", self.place.rank, self.place.size)
    }

    /// What the launcher wrote about a lost rank, waiting a moment for it (it writes it when it
    /// sees the process end, which may be just after this rank's collective failed).
    pub fn lost(&self) -> Option<String> {
        for _ in 0..20 {
            match self.store.contains(LOST_KEY) {
                Ok(true) => return self.store.get(LOST_KEY).ok().map(|v| String::from_utf8_lossy(&v).into_owned()),
                Ok(false) => std::thread::sleep(Duration::from_millis(100)),
                Err(_) => return None,
            }
        }
        None
    }

    pub fn all_reduce(&self, t: &Tensor, op: Op) -> Result<()> {
        let name = "all_reduce";
        if op == Op::Avg && !t.is_floating_point() {
            bail!("{name}: op 'avg' needs a floating-point tensor, got {:?}; use 'sum'", t.kind());
        }
        in_place(t, |c| self.group.all_reduce(c, op.reduce())).map_err(|e| self.failed(name, e))?;
        if op == Op::Avg {
            let _ = t.f_detach()?.f_div_scalar_(self.place.size as f64)?;
        }
        Ok(())
    }

    pub fn broadcast(&self, t: &Tensor, src: usize) -> Result<()> {
        if src >= self.place.size {
            bail!("broadcast: src {src} is not a rank of this world of {}", self.place.size);
        }
        in_place(t, |c| self.group.broadcast(c, src)).map_err(|e| self.failed("broadcast", e))
    }

    /// Every rank's `t`, stacked in rank order: shape (world, ...t's shape).
    pub fn all_gather(&self, t: &Tensor) -> Result<Tensor> {
        let t = t.f_detach()?.f_contiguous()?;
        let mut shape = vec![self.place.size as i64];
        shape.extend(t.size());
        let out = Tensor::f_empty(shape.as_slice(), (t.kind(), t.device()))?;
        let parts: Vec<Tensor> = (0..self.place.size as i64).map(|r| out.get(r)).collect();
        self.group.all_gather(&t, &parts.iter().collect::<Vec<_>>()).map_err(|e| self.failed("all_gather", e))?;
        Ok(out)
    }

    /// The reduction over ranks of their `t`, split along its first dimension: rank r gets
    /// part r (t's first dimension must divide by the world size).
    pub fn reduce_scatter(&self, t: &Tensor, op: Op) -> Result<Tensor> {
        let size = self.place.size as i64;
        let rows = t.size().first().copied().unwrap_or(0);
        if t.dim() == 0 || rows % size != 0 {
            bail!("reduce_scatter: the first dimension ({}) must divide by the world size ({size}); the tensor has shape {:?}", rows, t.size());
        }
        if op == Op::Avg && !t.is_floating_point() {
            bail!("reduce_scatter: op 'avg' needs a floating-point tensor, got {:?}; use 'sum'", t.kind());
        }
        let t = t.f_detach()?;
        let parts: Vec<Tensor> = t.f_chunk(size, 0)?.into_iter().map(|c| c.f_contiguous()).collect::<std::result::Result<_, _>>()?;
        let mut out = parts[0].f_empty_like()?;
        self.group.reduce_scatter(&parts.iter().collect::<Vec<_>>(), &out, op.reduce()).map_err(|e| self.failed("reduce_scatter", e))?;
        if op == Op::Avg {
            let _ = out.f_div_scalar_(size as f64)?;
        }
        Ok(out)
    }

    pub fn barrier(&self) -> Result<()> {
        self.group.barrier().map_err(|e| self.failed("barrier", e))
    }

    /// Rank 0's bytes on every rank.
    pub fn broadcast_bytes(&self, bytes: &[u8], operation: &str) -> Result<Vec<u8>> {
        let len = Tensor::from_slice(&[bytes.len() as i64]);
        self.group.broadcast(&len, 0).map_err(|e| self.failed(operation, e))?;
        let n = len.int64_value(&[0]) as usize;
        if n == 0 {
            return Ok(Vec::new());
        }
        let data = if self.place.rank == 0 { Tensor::from_slice(bytes) } else { Tensor::zeros([n as i64], (Kind::Uint8, tch::Device::Cpu)) };
        self.group.broadcast(&data, 0).map_err(|e| self.failed(operation, e))?;
        Ok(Vec::<u8>::try_from(&data)?)
    }

    /// Checks that every rank gives the same `values` (shapes, names' hashes), else an error
    /// saying `what` differs.
    pub fn agree(&self, values: &[i64], what: &str) -> Result<()> {
        // One max over [values, -values] gives the largest and (negated) the smallest of each.
        let both: Vec<i64> = values.iter().copied().chain(values.iter().map(|v| -v)).collect();
        let reduced = Tensor::from_slice(&both);
        self.group.all_reduce(&reduced, ReduceOp::Max).map_err(|e| self.failed(what, e))?;
        let extremes = Vec::<i64>::try_from(&reduced)?;
        let (high, low) = extremes.split_at(values.len());
        if high.iter().zip(low).any(|(h, l)| *h != -l) {
            bail!("the ranks disagree on {what}");
        }
        Ok(())
    }
}

/// `World::all_reduce` on the joined world; in a world of one, `t` stays as it is.
pub fn all_reduce(t: &Tensor, op: Op) -> Result<()> {
    match world()? {
        Some(w) => w.all_reduce(t, op),
        None if op == Op::Avg && !t.is_floating_point() => bail!("all_reduce: op 'avg' needs a floating-point tensor, got {:?}; use 'sum'", t.kind()),
        None => Ok(()),
    }
}

/// `World::broadcast`; in a world of one, `t` stays as it is (src must be 0).
pub fn broadcast(t: &Tensor, src: usize) -> Result<()> {
    match world()? {
        Some(w) => w.broadcast(t, src),
        None if src != 0 => bail!("broadcast: src {src} is not a rank of this world of 1"),
        None => Ok(()),
    }
}

/// `World::all_gather`; in a world of one, `t` with a leading dimension of 1.
pub fn all_gather(t: &Tensor) -> Result<Tensor> {
    match world()? {
        Some(w) => w.all_gather(t),
        None => Ok(t.f_detach()?.f_unsqueeze(0)?.f_contiguous()?),
    }
}

/// `World::reduce_scatter`; in a world of one, a copy of `t`.
pub fn reduce_scatter(t: &Tensor, op: Op) -> Result<Tensor> {
    match world()? {
        Some(w) => w.reduce_scatter(t, op),
        None if t.dim() == 0 => bail!("reduce_scatter: needs a tensor with at least one dimension"),
        None if op == Op::Avg && !t.is_floating_point() => bail!("reduce_scatter: op 'avg' needs a floating-point tensor, got {:?}; use 'sum'", t.kind()),
        None => Ok(t.f_detach()?.f_contiguous()?.copy()),
    }
}

pub fn barrier() -> Result<()> {
    match world()? {
        Some(w) => w.barrier(),
        None => Ok(()),
    }
}

/// Runs `f` on a contiguous tensor with `t`'s data (t itself, detached, when it is contiguous)
/// and puts the result back into `t`.
fn in_place(t: &Tensor, f: impl FnOnce(&Tensor) -> Result<()>) -> Result<()> {
    let mut data = t.f_detach()?;
    if data.is_contiguous() {
        return f(&data);
    }
    let copy = data.f_contiguous()?;
    f(&copy)?;
    tch::no_grad(|| data.f_copy_(&copy))?;
    Ok(())
}

/// A stable 63-bit hash of a list of names (FNV-1a), for `agree`.
pub fn names_hash<'a>(names: impl IntoIterator<Item = &'a str>) -> i64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for name in names {
        for b in name.bytes().chain(std::iter::once(0)) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    (h >> 1) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place_of(vars: &[(&str, &str)]) -> Result<Place> {
        Place::from_vars(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn a_bare_environment_is_a_world_of_one() {
        let p = place_of(&[]).unwrap();
        assert_eq!((p.rank, p.size, p.local_rank), (0, 1, 0));
    }

    #[test]
    fn torchrun_variables() {
        let p = place_of(&[("RANK", "3"), ("WORLD_SIZE", "4"), ("LOCAL_RANK", "1"), ("MASTER_ADDR", "10.1.2.3"), ("MASTER_PORT", "29500"), ("TORCHELASTIC_USE_AGENT_STORE", "True")]).unwrap();
        assert_eq!((p.rank, p.size, p.local_rank, p.master_port, p.agent_store), (3, 4, 1, 29500, true));
        assert_eq!(p.master_addr, "10.1.2.3");
    }

    #[test]
    fn slurm_variables() {
        let p = place_of(&[("SLURM_PROCID", "1"), ("SLURM_NTASKS", "2"), ("SLURM_LOCALID", "0"), ("MASTER_PORT", "29500")]).unwrap();
        assert_eq!((p.rank, p.size, p.local_rank), (1, 2, 0));
    }

    #[test]
    fn bad_variables_are_named() {
        assert!(place_of(&[("RANK", "2"), ("WORLD_SIZE", "2"), ("MASTER_PORT", "1")]).unwrap_err().to_string().contains("RANK=2"));
        assert!(place_of(&[("WORLD_SIZE", "two")]).unwrap_err().to_string().contains("WORLD_SIZE"));
        assert!(place_of(&[("WORLD_SIZE", "2")]).unwrap_err().to_string().contains("MASTER_PORT"));
    }

    #[test]
    fn backends_parse() {
        assert_eq!(place_of(&[]).unwrap().backend, Backend::Auto);
        assert_eq!(place_of(&[("MOONTUNE_DIST_BACKEND", "NCCL")]).unwrap().backend, Backend::Nccl);
        let err = format!("{:#}", place_of(&[("MOONTUNE_DIST_BACKEND", "mpi")]).unwrap_err());
        assert!(err.contains("MOONTUNE_DIST_BACKEND=\"mpi\"") && err.contains("auto, gloo or nccl"), "{err}");
    }

    #[test]
    fn ops_parse() {
        assert_eq!(Op::parse("avg").unwrap(), Op::Avg);
        assert!(Op::parse("mul").unwrap_err().to_string().contains("sum, avg, max or min"));
    }
}
