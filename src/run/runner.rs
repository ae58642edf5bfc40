//! The run thread's loop. It owns the Lua VM and every tensor; it loads the recipe, resolves the
//! config, calls `setup` once, then `step` until `cfg.steps` or `done`, `evaluate` every
//! `cfg.eval_every` steps and at the end, steps the garbage collector between steps, writes the
//! run directory, and reports everything as events. A stop flag (Ctrl-C) ends the run after the
//! current step.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use mlua::{Function, Lua, MultiValue, Table, Value};

use super::config::{loop_setting, parse_overrides, resolve};
use super::event::{Event, Metrics};
use super::recipe::Recipe;
use super::rundir::RunDir;
use crate::lua::runtime::call_traced;
use crate::lua::{load_file, new_lua, route_print, LuaTensor};

pub struct RunOptions {
    pub recipe: PathBuf,
    /// `key=value` config overrides.
    pub overrides: Vec<String>,
    /// Where run directories are made (`runs/`).
    pub runs_root: PathBuf,
    /// Set to stop after the current step.
    pub stop: Arc<AtomicBool>,
}

pub struct RunOutcome {
    pub steps: u64,
    pub run_dir: Option<PathBuf>,
    pub interrupted: bool,
}

/// Runs a recipe (or plain script) to its end, sending events; the error, if any, is also
/// reported in the final `Finished` event.
pub fn run(opts: &RunOptions, events: &Sender<Event>) -> Result<RunOutcome> {
    let mut progress = Progress { steps: 0, run_dir: None, interrupted: false };
    let result = run_inner(opts, events, &mut progress);
    let error = result.as_ref().err().map(|e| format!("{e:#}"));
    let _ = events.send(Event::Finished { step: progress.steps, run_dir: progress.run_dir.clone(), error, interrupted: progress.interrupted });
    result.map(|()| RunOutcome { steps: progress.steps, run_dir: progress.run_dir, interrupted: progress.interrupted })
}

struct Progress {
    steps: u64,
    run_dir: Option<PathBuf>,
    interrupted: bool,
}

fn run_inner(opts: &RunOptions, events: &Sender<Event>, progress: &mut Progress) -> Result<()> {
    let overrides = parse_overrides(&opts.overrides)?;
    let dir = opts.recipe.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let lua = new_lua(Some(&dir))?;
    let log = events.clone();
    route_print(&lua, Box::new(move |line| {
        let _ = log.send(Event::Log(line));
    }))?;
    let chunk = load_file(&lua, &opts.recipe)?;
    let returned: MultiValue = call_traced(&lua, &chunk, ()).map_err(|e| anyhow!(e))?;
    let table = match returned.into_iter().next() {
        None | Some(Value::Nil) => {
            if !overrides.is_empty() {
                return Err(anyhow!("{} is a plain script (it returns no recipe table), so it takes no key=value overrides", opts.recipe.display()));
            }
            return Ok(());
        }
        Some(Value::Table(t)) => t,
        Some(other) => return Err(anyhow!("{} returned a {}, expected a recipe table or nothing", opts.recipe.display(), other.type_name())),
    };
    let recipe = Recipe::from_table(&lua, table).with_context(|| format!("in {}", opts.recipe.display()))?;
    let cfg = resolve(&lua, &recipe.config, &overrides)?;
    if let Some(seed) = loop_setting(&cfg, "seed")? {
        tch::manual_seed(seed as i64);
        lua.load(format!("math.randomseed({seed})")).exec()?;
    }
    let total = loop_setting(&cfg, "steps")?;
    if total.is_none() && recipe.done.is_none() {
        return Err(anyhow!("the recipe needs config.steps or a done function to know when to stop"));
    }
    let eval_every = loop_setting(&cfg, "eval_every")?.unwrap_or(0);

    let mut run_dir = RunDir::create(&opts.runs_root, &opts.recipe)?;
    run_dir.write_config(&to_json(&Value::Table(cfg.clone())))?;
    progress.run_dir = Some(run_dir.path.clone());
    let log_every = loop_setting(&cfg, "log_every")?.unwrap_or(10);
    let _ = events.send(Event::Started { recipe: opts.recipe.display().to_string(), run_dir: Some(run_dir.path.clone()), total_steps: total, log_every });

    let state: Value = match &recipe.setup {
        Some(setup) => call_traced(&lua, setup, cfg.clone()).map_err(|e| anyhow!("setup failed: {e}"))?,
        None => Value::Table(lua.create_table()?),
    };
    let started = Instant::now();
    let mut last_eval = None;
    loop {
        if total.is_some_and(|t| progress.steps >= t) {
            break;
        }
        if opts.stop.load(Ordering::SeqCst) {
            progress.interrupted = true;
            break;
        }
        let step = progress.steps + 1;
        let out: Value = call_traced(&lua, &recipe.step, (state.clone(), cfg.clone())).map_err(|e| anyhow!("step {step} failed: {e}"))?;
        progress.steps = step;
        let metrics = metrics_of(&out)?;
        run_dir.log_metrics("step", step, started.elapsed().as_secs_f64(), &metrics)?;
        let _ = events.send(Event::Step { step, metrics });
        lua.gc_step()?;
        if eval_every > 0 && step % eval_every == 0 {
            evaluate(&lua, &recipe, &state, &cfg, step, started, &mut run_dir, events)?;
            last_eval = Some(step);
        }
        if let Some(done) = &recipe.done {
            let finished: Value = call_traced(&lua, done, (state.clone(), cfg.clone())).map_err(|e| anyhow!("done failed: {e}"))?;
            if !matches!(finished, Value::Nil | Value::Boolean(false)) {
                break;
            }
        }
    }
    if recipe.evaluate.is_some() && last_eval != Some(progress.steps) && !progress.interrupted {
        evaluate(&lua, &recipe, &state, &cfg, progress.steps, started, &mut run_dir, events)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn evaluate(lua: &Lua, recipe: &Recipe, state: &Value, cfg: &Table, step: u64, started: Instant, run_dir: &mut RunDir, events: &Sender<Event>) -> Result<()> {
    let Some(f) = &recipe.evaluate else { return Ok(()) };
    let out: Value = call_traced(lua, f as &Function, (state.clone(), cfg.clone())).map_err(|e| anyhow!("evaluate at step {step} failed: {e}"))?;
    let metrics = metrics_of(&out)?;
    run_dir.log_metrics("eval", step, started.elapsed().as_secs_f64(), &metrics)?;
    let _ = events.send(Event::Eval { step, metrics });
    Ok(())
}

/// The numbers in a table a recipe returned (one-element tensors count as numbers), by name.
pub fn metrics_of(v: &Value) -> Result<Metrics> {
    let Value::Table(t) = v else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for pair in t.pairs::<Value, Value>() {
        let (k, v) = pair?;
        let Value::String(name) = k else { continue };
        let value = match &v {
            Value::Integer(i) => *i as f64,
            Value::Number(n) => *n,
            Value::UserData(ud) => match ud.borrow::<LuaTensor>() {
                Ok(t) => match t.get("metrics") {
                    Ok(t) if t.numel() == 1 => t.f_double_value(&[])?,
                    _ => continue,
                },
                _ => continue,
            },
            _ => continue,
        };
        out.push((name.to_str()?.to_string(), value));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// A Lua value as JSON for config.json (functions and userdata as their type names).
fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Nil => serde_json::Value::Null,
        Value::Boolean(b) => (*b).into(),
        Value::Integer(i) => (*i).into(),
        Value::Number(n) => serde_json::Number::from_f64(*n).map(serde_json::Value::Number).unwrap_or(serde_json::Value::Null),
        Value::String(s) => s.to_string_lossy().to_string().into(),
        Value::Table(t) => {
            let mut map = serde_json::Map::new();
            for (k, v) in t.pairs::<Value, Value>().flatten() {
                let key = match &k {
                    Value::String(s) => s.to_string_lossy().to_string(),
                    Value::Integer(i) => i.to_string(),
                    other => format!("{other:?}"),
                };
                map.insert(key, to_json(&v));
            }
            serde_json::Value::Object(map)
        }
        other => other.type_name().into(),
    }
}
