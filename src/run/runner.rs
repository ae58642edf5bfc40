//! The run thread's loop. It owns the Lua VM and every tensor; it loads the recipe, resolves the
//! config, calls `setup` once, then `step` until `cfg.steps` or `done`, `evaluate` every
//! `cfg.eval_every` steps, at the end (and before the first step with `eval_on_start`), steps the garbage collector between steps, writes the
//! run directory, and reports everything as events. At each step boundary it applies the
//! commands that arrived (pause, save, evaluate, reload, a REPL line, quit). A reloaded recipe
//! runs on probation: if its `step` or `evaluate` fails on its first call, the previous version
//! is put back and the run goes on.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use mlua::{Function, Lua, LuaSerdeExt, MultiValue, Table, Value};

use super::checkpoints::{self, LoopMeta};
use super::command::Command;
use super::config::{loop_setting, parse_overrides, resolve, seed_setting};
use super::console::{eval_in_run, spawn_control_fifo};
use super::event::{Busy, Event, Metrics, Panel};
use super::panel;
use super::recipe::Recipe;
use super::reload::{merge_config, reload_recipe, watched_files};
use super::rundir::RunDir;
use super::watch;
use crate::lua::args::describe;
use crate::lua::runtime::call_traced;
use crate::lua::models::{adapters_of, model_panels_of, parameters_of};
use crate::lua::tensor::as_tensor;
use crate::lua::{load_file, new_lua, route_print};
use crate::checkpoint::policy::{Policy, Tracker};
use crate::dist::sync::{Decisions, Lockstep};
use crate::nn::module::ParamCounts;

pub struct RunOptions {
    pub recipe: PathBuf,
    /// `key=value` config overrides.
    pub overrides: Vec<String>,
    /// Where run directories are made (`runs/`).
    pub runs_root: PathBuf,
    /// Set to stop after the current step (Ctrl-C).
    pub stop: Arc<AtomicBool>,
    /// Set to reload at the next step boundary (SIGHUP).
    pub reload: Arc<AtomicBool>,
    /// Watch the recipe (and the modules it requires from its folder) and reload on change.
    pub watch: bool,
    /// Commands from front ends; `command_tx` is handed to the watcher and the control FIFO.
    pub commands: Receiver<Command>,
    pub command_tx: Sender<Command>,
    /// The Lua heap's limit in bytes (default: `runtime::default_memory_limit`).
    pub lua_memory: Option<u64>,
    /// Continue the run in this directory from its latest checkpoint.
    pub resume: Option<PathBuf>,
}

pub struct RunOutcome {
    pub steps: u64,
    pub run_dir: Option<PathBuf>,
    /// Stopped before its end: by Ctrl-C, or on request (`quit`).
    pub interrupted: bool,
    /// The stop was asked for (`:quit`, the TUI's `q`), not a Ctrl-C.
    pub quit: bool,
}

/// Runs a recipe (or plain script) to its end, sending events; the error, if any, is also
/// reported in the final `Finished` event.
pub fn run(opts: &RunOptions, events: &Sender<Event>) -> Result<RunOutcome> {
    let mut progress = Progress { steps: 0, run_dir: None, interrupted: false, quit: false };
    let result = run_inner(opts, events, &mut progress);
    let error = result.as_ref().err().map(|e| format!("{e:#}"));
    let _ = events.send(Event::Finished { step: progress.steps, run_dir: progress.run_dir.clone(), error, interrupted: progress.interrupted });
    if let Some(dir) = &progress.run_dir {
        let _ = std::fs::remove_file(dir.join("control"));
    }
    result.map(|()| RunOutcome { steps: progress.steps, run_dir: progress.run_dir, interrupted: progress.interrupted, quit: progress.quit })
}

struct Progress {
    steps: u64,
    run_dir: Option<PathBuf>,
    interrupted: bool,
    quit: bool,
}

/// The recipe functions in use, and the ones a reload replaced while the new ones are on
/// probation.
struct Versions {
    active: Recipe,
    version: u32,
    previous: Option<(Recipe, u32)>,
    step_proven: bool,
    eval_proven: bool,
}

impl Versions {
    fn swap_in(&mut self, recipe: Recipe, version: u32) {
        self.eval_proven = recipe.evaluate.is_none();
        let old = std::mem::replace(&mut self.active, recipe);
        self.previous = Some((old, self.version));
        self.version = version;
        self.step_proven = false;
    }

    /// Puts the previous version back if the active one is on probation; returns its version.
    fn revert(&mut self) -> Option<u32> {
        let (old, version) = self.previous.take()?;
        self.active = old;
        self.version = version;
        Some(version)
    }

    fn proven(&mut self, step: bool) {
        if step {
            self.step_proven = true;
        } else {
            self.eval_proven = true;
        }
        if self.step_proven && self.eval_proven {
            self.previous = None;
        }
    }
}

struct Loop<'a> {
    lua: &'a Lua,
    opts: &'a RunOptions,
    /// The recipe file, absolute.
    recipe: PathBuf,
    events: &'a Sender<Event>,
    run_dir: RunDir,
    cfg: Table,
    state: Value,
    cli_keys: Vec<String>,
    versions: Versions,
    swaps: u32,
    watched: watch::WatchedFiles,
    started: Instant,
    paused: bool,
    quit: bool,
    /// The seed the run started with (None: not seeded).
    seed: Option<i64>,
    policy: Policy,
    tracker: Tracker,
    recipe_hash: String,
    /// The step of the last checkpoint written (or resumed from).
    last_saved: Option<u64>,
    /// The other ranks of a data-parallel run (none in a world of one).
    lockstep: Lockstep,
    /// A stop was asked for (Ctrl-C on the main rank), as of the last step boundary.
    stop: bool,
}

fn run_inner(opts: &RunOptions, events: &Sender<Event>, progress: &mut Progress) -> Result<()> {
    let overrides = parse_overrides(&opts.overrides)?;
    // Under `moontune launch` (or torchrun), meet the other ranks first.
    let lockstep = Lockstep::join()?;
    // The recipe and its folder, absolute: `moontune run rec.lua` has an empty parent, and the
    // module path, the watcher and reloads all need the real folder.
    let recipe_path = std::path::absolute(&opts.recipe).map(|p| watch::canonical(&p)).with_context(|| format!("cannot resolve {}", opts.recipe.display()))?;
    let dir = recipe_path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
    let lua = new_lua(Some(&dir))?;
    if let Some(bytes) = opts.lua_memory {
        crate::lua::runtime::limit_memory(&lua, bytes)?;
    }
    let log = events.clone();
    route_print(&lua, Box::new(move |line| {
        let _ = log.send(Event::Log(line));
    }))?;
    let chunk = load_file(&lua, &recipe_path, None)?;
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
    let saved = opts.resume.as_deref().map(checkpoints::latest).transpose()?;
    let cfg = resolve(&lua, &recipe.config, &overrides)?;
    if let Some(saved) = &saved {
        // The run goes on with the config it had; key=value arguments still override it.
        if let serde_json::Value::Object(config) = &saved.config {
            for (k, v) in config {
                if !overrides.iter().any(|(o, _)| o == k) {
                    cfg.raw_set(k.as_str(), lua.to_value(v)?)?;
                }
            }
        }
    }
    let policy = checkpoints::policy_of(&cfg)?;
    let recipe_hash = checkpoints::recipe_hash(&recipe_path);
    let seed = seed_setting(&cfg)?;
    if let Some(seed) = seed {
        crate::lua::seed_everything(&lua, seed)?;
    }
    if loop_setting(&cfg, "steps")?.is_none() && recipe.done.is_none() {
        return Err(anyhow!("the recipe needs config.steps or a done function to know when to stop"));
    }

    let run_dir = if lockstep.is_main() {
        let made = match &saved {
            Some(s) => RunDir::resume(opts.resume.as_deref().expect("saved comes from --resume"), s.step, s.seconds)?,
            None => RunDir::create(&opts.runs_root, &opts.recipe)?,
        };
        lockstep.run_dir(Some(&made.path))?;
        made
    } else {
        RunDir::follower(&lockstep.run_dir(None)?)
    };
    run_dir.write_config(&to_json(&Value::Table(cfg.clone())))?;
    progress.run_dir = Some(run_dir.path.clone());
    if lockstep.is_main() {
        if saved.is_some() {
            // The FIFO of the run that was stopped (a killed process cannot remove its own).
            let _ = std::fs::remove_file(run_dir.path.join("control"));
        }
        spawn_control_fifo(&run_dir.path.join("control"), opts.command_tx.clone())?;
    }
    let _ = events.send(Event::Started {
        recipe: opts.recipe.display().to_string(),
        run_dir: Some(run_dir.path.clone()),
        total_steps: loop_setting(&cfg, "steps")?,
        log_every: loop_setting(&cfg, "log_every")?.unwrap_or(10),
    });

    let watched: watch::WatchedFiles = Arc::new(Mutex::new(Default::default()));
    let state: Value = match &recipe.setup {
        Some(setup) => call_traced(&lua, setup, cfg.clone()).map_err(|e| anyhow!("setup failed: {e}"))?,
        None => Value::Table(lua.create_table()?),
    };
    let mut tracker = Tracker::default();
    let mut started = Instant::now();
    if let Some(saved) = &saved {
        checkpoints::load(&lua, &saved.dir, &state, &cfg, recipe.load.as_ref()).with_context(|| format!("resuming from {}", saved.dir.display()))?;
        if !lockstep.is_main() && !checkpoints::load_rank(&lua, &run_dir.path, lockstep.rank(), saved.step, &state)? {
            let _ = events.send(Event::Log(format!("warning: the checkpoint has no part of rank {}; it goes on with rank 0's random streams and data positions", lockstep.rank())));
        }
        progress.steps = saved.step;
        tracker = saved.tracker.clone();
        started = started.checked_sub(Duration::from_secs_f64(saved.seconds)).unwrap_or(started);
        let _ = events.send(Event::Log(format!("resumed from {} (step {})", saved.dir.display(), saved.step)));
        if !saved.recipe_hash.is_empty() && saved.recipe_hash != recipe_hash {
            let _ = events.send(Event::Log(format!("warning: {} changed since the checkpoint was written; the run goes on with the recipe as it is now", opts.recipe.display())));
        }
    }
    *watched.lock().map_err(|_| anyhow!("watch list poisoned"))? = watched_files(&lua, &recipe_path)?;
    let _watcher = if opts.watch && lockstep.is_main() { Some(watch::spawn(&dir, watched.clone(), opts.command_tx.clone())?) } else { None };

    report_model(&state, events);
    let mut l = Loop {
        lua: &lua,
        opts,
        recipe: recipe_path,
        events,
        run_dir,
        cfg,
        state,
        cli_keys: overrides.into_iter().map(|(k, _)| k).collect(),
        versions: Versions { active: recipe, version: 1, previous: None, step_proven: true, eval_proven: true },
        swaps: 0,
        watched,
        started,
        paused: false,
        quit: false,
        seed,
        policy,
        tracker,
        recipe_hash,
        last_saved: saved.as_ref().map(|s| s.step),
        lockstep,
        stop: false,
    };
    l.run(progress)
}

impl Loop<'_> {
    fn run(&mut self, progress: &mut Progress) -> Result<()> {
        let mut last_eval = None;
        // The baseline: an evaluation before the first step (logged at step 0).
        if progress.steps == 0 && matches!(self.cfg.raw_get::<Value>("eval_on_start")?, Value::Boolean(true)) {
            self.evaluate(0)?;
        }
        loop {
            self.boundary(progress.steps)?;
            let total = loop_setting(&self.cfg, "steps")?;
            if total.is_some_and(|t| progress.steps >= t) {
                break;
            }
            if self.quit || self.stop {
                progress.interrupted = true;
                progress.quit = self.quit;
                break;
            }
            let step = progress.steps + 1;
            let out: Value = match call_traced(self.lua, &self.versions.active.step, (self.state.clone(), self.cfg.clone())) {
                Ok(v) => v,
                Err(e) => match self.versions.revert() {
                    Some(version) => {
                        self.report_reload(progress.steps, version, Some(format!("the new step failed on its first call, the previous version is back: {e}")))?;
                        continue;
                    }
                    None => return Err(anyhow!("step {step} failed: {e}")),
                },
            };
            self.versions.proven(true);
            progress.steps = step;
            let metrics = self.lockstep.combine(metrics_of(&out)?, "step")?;
            self.run_dir.log_metrics("step", step, self.started.elapsed().as_secs_f64(), &metrics)?;
            let panels = with_model_panels(panels_of(&out)?, &self.state);
            self.run_dir.log_panels(step, &panels)?;
            let _ = self.events.send(Event::Step { step, metrics, panels });
            report_adapters(&self.state, self.events);
            self.lua.gc_step()?;
            let eval_every = loop_setting(&self.cfg, "eval_every")?.unwrap_or(0);
            if eval_every > 0 && step % eval_every == 0 {
                self.evaluate(step)?;
                last_eval = Some(step);
            }
            let save_every = loop_setting(&self.cfg, "save_every")?.unwrap_or(0);
            if save_every > 0 && step % save_every == 0 {
                self.checkpoint(step);
            }
            if self.tracker.should_stop(&self.policy) {
                let _ = self.events.send(Event::Log(format!(
                    "early stop at step {step}: {} evaluations without a better {}",
                    self.tracker.evals_without_improvement,
                    self.policy.best.as_ref().map(|b| b.metric.as_str()).unwrap_or("metric")
                )));
                break;
            }
            if let Some(done) = &self.versions.active.done {
                let finished: Value = call_traced(self.lua, done, (self.state.clone(), self.cfg.clone())).map_err(|e| anyhow!("done failed: {e}"))?;
                if !matches!(finished, Value::Nil | Value::Boolean(false)) {
                    break;
                }
            }
        }
        if self.versions.active.evaluate.is_some() && last_eval != Some(progress.steps) && !progress.interrupted {
            self.evaluate(progress.steps)?;
        }
        // The end of the run (or where it was stopped) is a checkpoint too, when the run keeps them.
        if loop_setting(&self.cfg, "save_every")?.unwrap_or(0) > 0 && self.last_saved != Some(progress.steps) && progress.steps > 0 {
            self.checkpoint(progress.steps);
        }
        if self.policy.restore_best {
            self.restore_best()?;
        }
        if let Some(finish) = self.versions.active.finish.clone() {
            let dir = self.run_dir.path.display().to_string();
            call_traced::<Value>(self.lua, &finish, (self.state.clone(), self.cfg.clone(), dir)).map_err(|e| anyhow!("finish failed: {e}"))?;
        }
        if !self.lockstep.is_main() {
            return Ok(());
        }
        // The report is a view of what the run wrote; failing to draw it loses nothing.
        match crate::report::write(std::slice::from_ref(&self.run_dir.path), &self.run_dir.path) {
            Ok(w) => {
                let _ = self.events.send(Event::Log(format!("report: {}", w.html.display())));
            }
            Err(e) => {
                let _ = self.events.send(Event::Log(format!("error: the report was not written: {e:#}")));
            }
        }
        Ok(())
    }

    /// Applies the commands decided at this boundary (on the main rank: those that arrived;
    /// the other ranks get the same); while paused, waits for more.
    fn boundary(&mut self, step: u64) -> Result<()> {
        loop {
            let mine = if self.lockstep.is_main() { self.arrived() } else { Decisions::default() };
            let decided = self.lockstep.decide(mine)?;
            self.stop |= decided.stop;
            for command in decided.commands {
                match command {
                    Command::Pause => self.set_paused(true),
                    Command::Resume => self.set_paused(false),
                    Command::TogglePause => self.set_paused(!self.paused),
                    Command::Save => self.checkpoint(step),
                    Command::EvalNow => self.evaluate(step)?,
                    Command::Reload => self.reload(step)?,
                    Command::Repl(line) => {
                        let result = eval_in_run(self.lua, &line, &self.state, &self.cfg);
                        let _ = self.events.send(Event::Log(format!("> {line}\n{result}")));
                        self.settings_changed()?;
                    }
                    Command::Quit => self.quit = true,
                }
            }
            if !self.paused || self.quit || self.stop {
                return Ok(());
            }
        }
    }

    /// What arrived since the last boundary: a reload (SIGHUP), commands, a stop (Ctrl-C);
    /// while paused, waits up to 100 ms for a command.
    fn arrived(&self) -> Decisions {
        let mut commands = Vec::new();
        if self.opts.reload.swap(false, Ordering::SeqCst) {
            commands.push(Command::Reload);
        }
        let stop = self.opts.stop.load(Ordering::SeqCst);
        if self.paused && !self.quit && !stop {
            if let Ok(c) = self.opts.commands.recv_timeout(Duration::from_millis(100)) {
                commands.push(c);
            }
        }
        commands.extend(self.opts.commands.try_iter());
        Decisions { commands, stop }
    }

    /// After the config may have changed (a REPL line, a reload): front ends learn the loop's
    /// settings anew; the seed, which only seeds the start of a run, is put back with a message.
    fn settings_changed(&mut self) -> Result<()> {
        let seed = seed_setting(&self.cfg);
        if !matches!(&seed, Ok(s) if *s == self.seed) {
            self.cfg.raw_set("seed", self.seed)?;
            let _ = self.events.send(Event::Log("cfg.seed seeds a run at its start and cannot change while it runs; it was set back".into()));
        }
        let settings = (loop_setting(&self.cfg, "steps"), loop_setting(&self.cfg, "log_every"));
        match settings {
            (Ok(total_steps), Ok(log_every)) => {
                let _ = self.events.send(Event::Settings { total_steps, log_every: log_every.unwrap_or(10) });
            }
            (Err(e), _) | (_, Err(e)) => {
                let _ = self.events.send(Event::Log(format!("error: {e:#}")));
            }
        }
        Ok(())
    }

    fn set_paused(&mut self, paused: bool) {
        if self.paused != paused {
            self.paused = paused;
            let _ = self.events.send(Event::Paused(paused));
        }
    }

    fn evaluate(&mut self, step: u64) -> Result<()> {
        let Some(f) = self.versions.active.evaluate.clone() else { return Ok(()) };
        let _ = self.events.send(Event::Busy(Busy::Evaluating));
        let out: Value = match call_traced(self.lua, &f as &Function, (self.state.clone(), self.cfg.clone())) {
            Ok(v) => v,
            Err(e) => match self.versions.revert() {
                Some(version) => {
                    return self.report_reload(step, version, Some(format!("the new evaluate failed on its first call, the previous version is back: {e}")));
                }
                None => return Err(anyhow!("evaluate at step {step} failed: {e}")),
            },
        };
        self.versions.proven(false);
        let metrics = self.lockstep.combine(metrics_of(&out)?, "evaluate")?;
        if let Some(best) = &self.policy.best {
            self.tracker.on_eval(best, &metrics);
        }
        self.run_dir.log_metrics("eval", step, self.started.elapsed().as_secs_f64(), &metrics)?;
        let panels = with_model_panels(panels_of(&out)?, &self.state);
        self.run_dir.log_panels(step, &panels)?;
        self.run_dir.log_panel_rows(step, self.started.elapsed().as_secs_f64(), &panels)?;
        let _ = self.events.send(Event::Eval { step, metrics, panels });
        Ok(())
    }

    /// Writes the checkpoint of `step` and prunes by the policy. A failure (a full disk) is
    /// reported and the run goes on; the previous checkpoint stays whole.
    fn checkpoint(&mut self, step: u64) {
        self.tracker.on_checkpoint(step);
        // In a data-parallel run every other rank writes its own part first (its random streams
        // and data positions; the weights and optimizer state are rank 0's on every rank), so
        // that a checkpoint rank 0 committed has all its parts.
        if !self.lockstep.is_main() {
            if let Err(e) = checkpoints::save_rank(self.lua, &self.run_dir.path, self.lockstep.rank(), step, &self.state) {
                let _ = self.events.send(Event::Log(format!("error: rank {}'s part of the checkpoint of step {step} was not written: {e:#}", self.lockstep.rank())));
            }
        }
        if let Err(e) = self.lockstep.barrier("the checkpoint's barrier") {
            let _ = self.events.send(Event::Log(format!("error: the checkpoint of step {step} was not written: {e:#}")));
            return;
        }
        if !self.lockstep.is_main() {
            self.last_saved = Some(step);
            return;
        }
        let meta = LoopMeta { tracker: &self.tracker, seconds: self.started.elapsed().as_secs_f64(), recipe_hash: &self.recipe_hash };
        let result = checkpoints::save(self.lua, &self.run_dir.path, step, &self.state, &self.cfg, self.versions.active.save.as_ref(), meta)
            .and_then(|(dir, skipped)| checkpoints::prune(&self.run_dir.path, &self.policy, &self.tracker).map(|()| (dir, skipped)));
        match result {
            Ok((dir, skipped)) => {
                self.last_saved = Some(step);
                let note = if skipped.is_empty() { String::new() } else { format!(" (not saved, made again by setup: {})", skipped.join(", ")) };
                let _ = self.events.send(Event::Log(format!("checkpoint {}{note}", dir.display())));
            }
            Err(e) => {
                let _ = self.events.send(Event::Log(format!("error: the checkpoint of step {step} was not written: {e:#}")));
            }
        }
    }

    /// Loads the best checkpoint by `keep_best` into the state (before `finish`).
    fn restore_best(&mut self) -> Result<()> {
        let Some(best) = &self.policy.best else { return Ok(()) };
        let root = crate::checkpoint::store::root(&self.run_dir.path);
        let Some(step) = self.tracker.best_checkpoint(best, &crate::checkpoint::store::steps(&root)) else {
            let _ = self.events.send(Event::Log(format!("restore_best: no checkpoint has a value of {}", best.metric)));
            return Ok(());
        };
        let dir = root.join(crate::checkpoint::store::name(step));
        checkpoints::load(self.lua, &dir, &self.state, &self.cfg, self.versions.active.load.as_ref())?;
        let _ = self.events.send(Event::Log(format!("restored the best checkpoint, {} (by {})", dir.display(), best.metric)));
        Ok(())
    }

    /// Loads the recipe again and swaps in its functions, keeping state; on failure keeps the
    /// running version. Either way the result is an event and a metrics row.
    fn reload(&mut self, step: u64) -> Result<()> {
        let _ = self.events.send(Event::Busy(Busy::Reloading));
        let result = reload_recipe(self.lua, &self.recipe).and_then(|recipe| {
            merge_config(&self.cfg, &recipe.config, &self.cli_keys)?;
            if let Some(on_reload) = &recipe.on_reload {
                call_traced::<Value>(self.lua, on_reload, (self.state.clone(), self.cfg.clone())).map_err(|e| anyhow!("on_reload failed: {e}"))?;
            }
            Ok(recipe)
        });
        if let Ok(files) = watched_files(self.lua, &self.recipe) {
            if let Ok(mut w) = self.watched.lock() {
                *w = files;
            }
        }
        match result {
            Ok(recipe) => {
                self.swaps += 1;
                self.versions.swap_in(recipe, self.swaps + 1);
                report_model(&self.state, self.events);
                self.settings_changed()?;
                self.report_reload(step, self.versions.version, None)
            }
            Err(e) => self.report_reload(step, self.versions.version, Some(format!("{e:#}"))),
        }
    }

    fn report_reload(&mut self, step: u64, version: u32, error: Option<String>) -> Result<()> {
        self.run_dir.log_reload(step, self.started.elapsed().as_secs_f64(), version, error.as_deref())?;
        let _ = self.events.send(Event::Reload { step, version, error });
        Ok(())
    }
}

/// Sends the parameter counts of `state.model` (a loaded model or a Lua module), if there is
/// one, and its adapters.
fn report_model(state: &Value, events: &Sender<Event>) {
    let Value::Table(t) = state else { return };
    let Ok(model) = t.raw_get::<Value>("model") else { return };
    if let Some(params) = parameters_of(&model) {
        let _ = events.send(Event::Model(ParamCounts::of(&params)));
    }
    report_adapters(state, events);
}

/// The recipe's panels and those `state.model` shows by itself (fusion weights), the recipe's
/// winning where both use a name.
fn with_model_panels(mut panels: Vec<Panel>, state: &Value) -> Vec<Panel> {
    let Value::Table(t) = state else { return panels };
    let Ok(model) = t.raw_get::<Value>("model") else { return panels };
    for p in model_panels_of(&model) {
        if !panels.iter().any(|q| q.name == p.name) {
            panels.push(p);
        }
    }
    panels.sort_by(|a, b| a.name.cmp(&b.name));
    panels
}

/// Sends the adapters of `state.model` with their current norms, if it has any.
fn report_adapters(state: &Value, events: &Sender<Event>) {
    let Value::Table(t) = state else { return };
    let Ok(model) = t.raw_get::<Value>("model") else { return };
    if let Some(adapters) = adapters_of(&model).filter(|a| !a.is_empty()) {
        let _ = events.send(Event::Adapters(adapters));
    }
}

/// The heat-map tables under `panels` in a table a recipe returned: each a matrix (nested
/// sequences or a 2-D tensor) or `{ rows = {...}, cols = {...}, values = matrix }`.
pub fn panels_of(v: &Value) -> Result<Vec<Panel>> {
    let Value::Table(t) = v else { return Ok(Vec::new()) };
    let Value::Table(panels) = t.raw_get::<Value>("panels")? else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for pair in panels.pairs::<Value, Value>() {
        let (key, spec) = pair?;
        let name = match &key {
            Value::String(s) => s.to_str().map(|s| s.to_string()).map_err(|_| anyhow!("panel names must be UTF-8 text, got {:?}", s.to_string_lossy()))?,
            other => return Err(anyhow!("panels: the names must be strings, got {}", describe(other))),
        };
        let (values, rows, cols) = match &spec {
            Value::Table(s) if s.contains_key("values")? => (s.get::<Value>("values")?, labels_of(&name, "rows", s.get("rows")?)?, labels_of(&name, "cols", s.get("cols")?)?),
            // What mt.metrics.confusion_matrix returns: { labels, matrix }.
            Value::Table(s) if s.contains_key("matrix")? => (s.get::<Value>("matrix")?, labels_of(&name, "labels", s.get("labels")?)?, labels_of(&name, "labels", s.get("labels")?)?),
            other => (other.clone(), None, None),
        };
        let (values, row_labels, col_labels) = match &values {
            Value::UserData(_) => match as_tensor(&values) {
                Some(t) => {
                    if t.dim() != 2 {
                        return Err(anyhow!("panel '{name}' must be a 2-D table or tensor, got shape {:?}", t.size()));
                    }
                    panel::from_tensor(&t, rows, cols)?
                }
                None => continue,
            },
            Value::Table(table) => {
                let matrix = matrix_of(&name, table)?;
                let width = matrix.iter().map(Vec::len).max().unwrap_or(0);
                panel::shrink(&matrix, &panel::labels(rows, matrix.len()), &panel::labels(cols, width))
            }
            _ => continue,
        };
        out.push(Panel { name, rows: row_labels, cols: col_labels, values });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// A panel's `rows` or `cols` labels: a list of strings, or nil.
fn labels_of(name: &str, which: &str, v: Value) -> Result<Option<Vec<String>>> {
    let Value::Table(list) = v else {
        return match v {
            Value::Nil => Ok(None),
            other => Err(anyhow!("panel '{name}': {which} must be a list of labels, got {}", describe(&other))),
        };
    };
    let labels = list.sequence_values::<Value>().enumerate().map(|(i, label)| match label? {
        Value::String(s) => Ok(s.to_string_lossy()),
        Value::Integer(n) => Ok(n.to_string()),
        other => Err(anyhow!("panel '{name}': {which}[{}] must be a label (a string), got {}", i + 1, describe(&other))),
    });
    Ok(Some(labels.collect::<Result<_>>()?))
}

/// A panel given as a table of rows of numbers.
fn matrix_of(name: &str, table: &Table) -> Result<Vec<Vec<f64>>> {
    let mut matrix = Vec::new();
    for (r, row) in table.clone().sequence_values::<Value>().enumerate() {
        let Value::Table(row) = row? else { return Err(anyhow!("panel '{name}': row {} must be a table of numbers", r + 1)) };
        let mut numbers = Vec::new();
        for (c, v) in row.sequence_values::<Value>().enumerate() {
            numbers.push(match v? {
                Value::Integer(n) => n as f64,
                Value::Number(n) => n,
                other => return Err(anyhow!("panel '{name}': row {}, column {}: expected a number, got {}", r + 1, c + 1, describe(&other))),
            });
        }
        matrix.push(numbers);
    }
    Ok(matrix)
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
            Value::UserData(_) => match as_tensor(&v) {
                Some(t) if t.numel() == 1 => t.f_double_value(&[])?,
                _ => continue,
            },
            _ => continue,
        };
        let Ok(name) = name.to_str() else {
            bail!("a metric is named {:?}: metric names must be UTF-8 text", name.to_string_lossy());
        };
        out.push((name.to_string(), value));
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
