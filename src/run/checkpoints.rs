//! A run's checkpoints: the policy its config sets (`save_every`, `keep_last`, `keep_best`,
//! `patience`, `restore_best`), writing one (through mt.checkpoint.save, with the recipe's `save`
//! hook adding files before the commit), pruning by the policy, and reading one back for
//! `--resume` (through mt.checkpoint.load, then the recipe's `load` hook).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use mlua::{Function, Lua, LuaSerdeExt, Table, Value};
use serde_json::json;

use super::config::loop_setting;
use crate::checkpoint::policy::{Best, Policy, Tracker};
use crate::checkpoint::store;
use crate::lua::runtime::call_traced;

pub fn policy_of(cfg: &Table) -> Result<Policy> {
    let best = match cfg.raw_get::<Value>("keep_best")? {
        Value::Nil => None,
        Value::String(s) => Some(Best::parse(&s.to_str()?)?),
        other => bail!("config key 'keep_best' must be a metric name such as \"eval_loss:min\", got a {}", other.type_name()),
    };
    let restore_best = match cfg.raw_get::<Value>("restore_best")? {
        Value::Nil => false,
        Value::Boolean(b) => b,
        other => bail!("config key 'restore_best' must be true or false, got a {}", other.type_name()),
    };
    let patience = loop_setting(cfg, "patience")?.map(|p| p as u32);
    if (patience.is_some() || restore_best) && best.is_none() {
        bail!("patience and restore_best judge by a metric: set keep_best too (e.g. keep_best = \"eval_loss:min\")");
    }
    let keep_last = loop_setting(cfg, "keep_last")?.map(|k| k as usize);
    if keep_last == Some(0) {
        bail!("config key 'keep_last' must be at least 1 (the latest checkpoint is always kept)");
    }
    Ok(Policy { keep_last, best, patience, restore_best })
}

/// A 64-bit fingerprint of the recipe's source, to notice a changed recipe on resume.
pub fn recipe_hash(recipe: &Path) -> String {
    let bytes = std::fs::read(recipe).unwrap_or_default();
    format!("{:016x}", crate::data::minhash::hash_bytes(&bytes))
}

fn checkpoint_module(lua: &Lua) -> Result<Table> {
    let require: Function = lua.globals().get("require")?;
    let mt: Table = require.call("moontune")?;
    Ok(mt.get("checkpoint")?)
}

/// What the run loop saves about itself in a checkpoint's `meta`.
pub struct LoopMeta<'a> {
    pub tracker: &'a Tracker,
    pub seconds: f64,
    pub recipe_hash: &'a str,
}

/// Writes the checkpoint of `step` under the run directory, points `latest` at it and prunes by
/// the policy. Returns the checkpoint's directory and the state paths not saved.
pub fn save(lua: &Lua, run_dir: &Path, step: u64, state: &Value, cfg: &Table, hook: Option<&Function>, meta: LoopMeta) -> Result<(PathBuf, Vec<String>)> {
    let root = store::root(run_dir);
    let target = root.join(store::name(step));
    let info = lua.create_table()?;
    info.set("step", step)?;
    info.set("config", cfg.clone())?;
    let meta = json!({ "tracker": meta.tracker, "time": meta.seconds, "recipe_hash": meta.recipe_hash });
    info.set("meta", lua.to_value(&meta)?)?;
    if let Some(hook) = hook {
        let (hook, state, cfg) = (hook.clone(), state.clone(), cfg.clone());
        let before_commit = lua.create_function(move |lua, tmp: String| call_traced::<Value>(lua, &hook, (state.clone(), cfg.clone(), tmp)).map_err(|e| mlua::Error::runtime(format!("the recipe's save failed: {e}"))))?;
        info.set("before_commit", before_commit)?;
    }
    let save: Function = checkpoint_module(lua)?.get("save")?;
    let skipped: Vec<String> = call_traced(lua, &save, (target.display().to_string(), state.clone(), info)).map_err(|e| anyhow!("{e}"))?;
    store::point_latest(&root, step)?;
    Ok((target, skipped))
}

/// Where rank `rank` (not 0) of a data-parallel run keeps its own checkpoints: its random streams
/// and data positions (`mt.checkpoint.rank_state`); the rest is the same on every rank and is in
/// rank 0's.
fn rank_root(run_dir: &Path, rank: usize) -> PathBuf {
    store::root(run_dir).join("ranks").join(format!("rank-{rank}"))
}

/// Writes rank `rank`'s part of the checkpoint of `step`, and removes its parts of the steps
/// that rank 0 no longer keeps.
pub fn save_rank(lua: &Lua, run_dir: &Path, rank: usize, step: u64, state: &Value) -> Result<PathBuf> {
    let module = checkpoint_module(lua)?;
    let subset: Table = module.get::<Function>("rank_state")?.call(state.clone())?;
    let root = rank_root(run_dir, rank);
    std::fs::create_dir_all(&root)?;
    let target = root.join(store::name(step));
    let info = lua.create_table()?;
    info.set("step", step)?;
    call_traced::<Value>(lua, &module.get::<Function>("save")?, (target.display().to_string(), subset, info)).map_err(|e| anyhow!("{e}"))?;
    let main = store::steps(&store::root(run_dir));
    for old in store::steps(&root).into_iter().filter(|s| *s != step && !main.contains(s)) {
        let _ = std::fs::remove_dir_all(root.join(store::name(old)));
    }
    Ok(target)
}

/// Restores rank `rank`'s part of the checkpoint of `step` into `state` (after rank 0's);
/// false when there is none (a checkpoint written before the run had this rank).
pub fn load_rank(lua: &Lua, run_dir: &Path, rank: usize, step: u64, state: &Value) -> Result<bool> {
    let dir = rank_root(run_dir, rank).join(store::name(step));
    if !dir.is_dir() {
        return Ok(false);
    }
    let module = checkpoint_module(lua)?;
    let subset: Table = module.get::<Function>("rank_state")?.call(state.clone())?;
    call_traced::<Value>(lua, &module.get::<Function>("load")?, (dir.display().to_string(), subset)).map_err(|e| anyhow!("{e}"))?;
    Ok(true)
}

/// Removes the checkpoints the policy does not keep.
pub fn prune(run_dir: &Path, policy: &Policy, tracker: &Tracker) -> Result<()> {
    let root = store::root(run_dir);
    store::prune(&root, &tracker.keep(policy, &store::steps(&root)))
}

/// What a checkpoint says about the run that wrote it.
pub struct Saved {
    pub dir: PathBuf,
    pub step: u64,
    pub config: serde_json::Value,
    pub tracker: Tracker,
    pub seconds: f64,
    pub recipe_hash: String,
}

/// The latest checkpoint of a run directory, checked, with what its manifest says.
pub fn latest(run_dir: &Path) -> Result<Saved> {
    if !run_dir.is_dir() {
        bail!("--resume {}: no such run directory", run_dir.display());
    }
    let dir = store::latest(&store::root(run_dir))?;
    let manifest = store::check(&dir)?;
    let step = manifest.get("step").and_then(|s| s.as_u64()).ok_or_else(|| anyhow!("the checkpoint {} has no step", dir.display()))?;
    let meta = manifest.get("meta").cloned().unwrap_or_default();
    Ok(Saved {
        dir,
        step,
        config: manifest.get("config").cloned().unwrap_or_default(),
        tracker: serde_json::from_value(meta.get("tracker").cloned().unwrap_or_default()).unwrap_or_default(),
        seconds: meta.get("time").and_then(|t| t.as_f64()).unwrap_or(0.0),
        recipe_hash: meta.get("recipe_hash").and_then(|h| h.as_str()).unwrap_or_default().to_string(),
    })
}

/// Restores a checkpoint into `state` (as `setup` made it), then calls the recipe's `load` hook.
pub fn load(lua: &Lua, dir: &Path, state: &Value, cfg: &Table, hook: Option<&Function>) -> Result<()> {
    let load: Function = checkpoint_module(lua)?.get("load")?;
    call_traced::<Value>(lua, &load, (dir.display().to_string(), state.clone())).map_err(|e| anyhow!("{e}"))?;
    if let Some(hook) = hook {
        call_traced::<Value>(lua, hook, (state.clone(), cfg.clone(), dir.display().to_string())).map_err(|e| anyhow!("the recipe's load failed: {e}"))?;
    }
    Ok(())
}
