//! Hot reload on a real training run, and the control FIFO (the REPL into a live run, pause and
//! resume, headless). Each test starts `moontune run` on a recipe in a temporary folder, changes
//! files while it trains, and reads what happened from the run's metrics.jsonl.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const HELPER: &str = "return { scale = 1 }\n";

/// A recipe that trains p towards 3 with Adam, slowly enough to edit it meanwhile, and stops
/// when the file `stop` appears. `marker` and `loss_scale` tell the versions apart.
fn recipe(stop: &Path, marker: i64, loss_scale: f64) -> String {
    format!(
        r#"local mt = require "moontune"
local helper = require "helper"
return {{
  config = {{ steps = 100000, lr = 0.05, stop_file = {stop:?} }},
  setup = function(cfg)
    local p = mt.tensor.zeros({{ 4 }}, {{ requires_grad = true }})
    local opt = mt.optim.adam({{ p }}, {{ lr = cfg.lr }})
    return {{ p = p, opt = opt, first_opt = opt }}
  end,
  step = function(state, cfg)
    local t = mt.clock() while mt.clock() - t < 0.02 do end
    local loss = (state.p - 3):pow(2):sum() * {loss_scale}
    state.opt:zero_grad(); loss:backward(); state.opt:step()
    return {{ loss = loss, marker = {marker} * helper.scale, lr = state.opt:get_lr(),
             adam_step = state.opt:state_dict().state[1].step,
             same_opt = rawequal(state.opt, state.first_opt) and 1 or 0 }}
  end,
  on_reload = function(state, cfg) state.reloads = (state.reloads or 0) + 1 end,
  done = function(state, cfg) return io.open(cfg.stop_file) ~= nil end,
  finish = function(state, cfg) print("finish ran") end,
}}
"#
    )
}

struct Run {
    dir: tempfile::TempDir,
    child: Child,
}

impl Run {
    fn start(extra: &[&str]) -> Run {
        Run::start_as(extra, false)
    }

    /// With `bare`, as the README shows it: from the recipe's folder, `moontune run train.lua`.
    fn start_as(extra: &[&str], bare: bool) -> Run {
        Run::start_recipe(|dir| recipe(&dir.join("stop"), 1, 1.0), extra, bare)
    }

    /// Runs the recipe `text(folder)` as train.lua, with helper.lua beside it.
    fn start_recipe(text: impl Fn(&Path) -> String, extra: &[&str], bare: bool) -> Run {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("helper.lua"), HELPER).unwrap();
        std::fs::write(dir.path().join("train.lua"), text(dir.path())).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_moontune"));
        command.arg("run");
        if bare {
            command.current_dir(dir.path()).arg("train.lua");
        } else {
            command.arg(dir.path().join("train.lua"));
        }
        let child = command
            .arg("--runs-dir")
            .arg(dir.path().join("runs"))
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let run = Run { dir, child };
        run.wait_for("the first steps", |rows| steps(rows).len() >= 3);
        run
    }

    fn write_recipe(&self, marker: i64, loss_scale: f64) {
        self.write_text(&recipe(&self.dir.path().join("stop"), marker, loss_scale));
    }

    fn write_text(&self, text: &str) {
        std::fs::write(self.dir.path().join("train.lua"), text).unwrap();
    }

    fn run_dir(&self) -> Option<PathBuf> {
        std::fs::read_dir(self.dir.path().join("runs")).ok()?.next()?.ok().map(|e| e.path())
    }

    fn rows(&self) -> Vec<Value> {
        let Some(dir) = self.run_dir() else { return Vec::new() };
        std::fs::read_to_string(dir.join("metrics.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn wait_for(&self, what: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let rows = self.rows();
            if ok(&rows) {
                return rows;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "timed out waiting for {what}; rows: {rows:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn control(&self, line: &str) {
        let path = self.run_dir().unwrap().join("control");
        let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        writeln!(f, "{line}").unwrap();
    }

    fn finish(self) -> Output {
        std::fs::write(self.dir.path().join("stop"), "").unwrap();
        self.wait()
    }

    /// Waits for the run to end by itself.
    fn wait(self) -> Output {
        let out = self.child.wait_with_output().unwrap();
        drop(self.dir);
        out
    }
}

fn steps(rows: &[Value]) -> Vec<&Value> {
    rows.iter().filter(|r| r["kind"] == "step").collect()
}

fn reloads(rows: &[Value]) -> Vec<&Value> {
    rows.iter().filter(|r| r["kind"] == "reload").collect()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn editing_the_recipe_swaps_code_and_keeps_the_optimizer() {
    let run = Run::start(&[]);
    // A new loss: the reported values change, training goes on.
    run.write_recipe(2, 10.0);
    run.wait_for("reload to version 2", |rows| steps(rows).last().is_some_and(|s| s["marker"] == 2.0));
    // A syntax error: the old version keeps running and the error names the file and line.
    run.write_text("return {\n  config = {},\n  step = function( oops\n}\n");
    let rows = run.wait_for("a failed reload", |rows| reloads(rows).iter().any(|r| r["result"] == "error"));
    let failed = reloads(&rows).into_iter().find(|r| r["result"] == "error").unwrap();
    let message = failed["error"].as_str().unwrap();
    let at = message.find("train.lua:").expect("the error names the file");
    assert!(message[at + 10..].starts_with(|c: char| c.is_ascii_digit()), "and the line: {message}");
    assert_eq!(failed["version"], 2);
    // Fixing it reloads again.
    run.write_recipe(3, 1.0);
    run.wait_for("reload to version 3", |rows| steps(rows).last().is_some_and(|s| s["marker"] == 3.0));
    // A required helper module changed: reloaded too.
    std::fs::write(run.dir.path().join("helper.lua"), "return { scale = 100 }\n").unwrap();
    let rows = run.wait_for("the helper's new value", |rows| steps(rows).last().is_some_and(|s| s["marker"] == 300.0));
    let out = run.finish();
    assert!(out.status.success(), "{}", text(&out));

    let all = steps(&rows);
    for (i, s) in all.iter().enumerate() {
        assert_eq!(s["step"], i as u64 + 1, "the step counter continues across reloads");
        assert_eq!(s["adam_step"], (i + 1) as f64, "the optimizer keeps its accumulated state");
        assert_eq!(s["same_opt"], 1.0, "the optimizer is the same object");
    }
    let losses: Vec<f64> = all.iter().map(|s| s["loss"].as_f64().unwrap()).collect();
    let v2 = all.iter().position(|s| s["marker"] == 2.0).unwrap();
    assert!(losses[v2] > 5.0 * losses[v2 - 1], "the new loss (x10) shows at the swap: {} -> {}", losses[v2 - 1], losses[v2]);
    let ok: Vec<u64> = reloads(&rows).iter().filter(|r| r["result"] == "ok").map(|r| r["version"].as_u64().unwrap()).collect();
    assert_eq!(ok, vec![2, 3, 4]);
}

#[test]
fn a_recipe_run_by_its_bare_name_reloads_its_helpers() {
    let run = Run::start_as(&[], true);
    std::fs::write(run.dir.path().join("helper.lua"), "return { scale = 100 }\n").unwrap();
    run.wait_for("the helper's new value", |rows| steps(rows).last().is_some_and(|s| s["marker"] == 100.0));
    // Reloading the recipe itself requires the helper anew, not a cached copy.
    std::fs::write(run.dir.path().join("helper.lua"), "return { scale = 1000 }\n").unwrap();
    run.write_recipe(2, 1.0);
    run.wait_for("the recipe and the helper both new", |rows| steps(rows).last().is_some_and(|s| s["marker"] == 2000.0));
    let out = run.finish();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("finish ran"), "finish runs at the end of a run");
}

#[test]
fn bursts_of_writes_give_few_reloads() {
    let run = Run::start(&[]);
    let before = reloads(&run.rows()).len();
    let start = Instant::now();
    for i in 0..50 {
        run.write_recipe(1, 1.0 + i as f64 / 100.0);
        std::thread::sleep(Duration::from_millis(15));
    }
    assert!(start.elapsed() < Duration::from_secs(2));
    let rows = run.wait_for("a reload after the burst", |rows| reloads(rows).len() > before);
    std::thread::sleep(Duration::from_millis(800));
    let rows = if run.rows().len() > rows.len() { run.rows() } else { rows };
    let out = run.finish();
    assert!(out.status.success(), "{}", text(&out));
    let n = reloads(&rows).len() - before;
    assert!((1..=3).contains(&n), "{n} reloads for 50 writes");
    assert!(reloads(&rows).iter().all(|r| r["result"] == "ok"));
}

#[test]
fn control_fifo_evaluates_lua_pauses_and_resumes() {
    let run = Run::start(&["--no-watch"]);
    run.control("state.opt:set_lr(0.5)");
    run.wait_for("the new lr", |rows| steps(rows).last().is_some_and(|s| s["lr"] == 0.5));
    run.control(":pause");
    std::thread::sleep(Duration::from_millis(300));
    let paused_at = steps(&run.rows()).len();
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(steps(&run.rows()).len(), paused_at, "no steps while paused");
    run.control(":resume");
    run.wait_for("steps after resuming", |rows| steps(rows).len() > paused_at + 3);
    // --no-watch: editing does nothing, but :reload does.
    run.write_recipe(7, 1.0);
    std::thread::sleep(Duration::from_millis(600));
    assert!(reloads(&run.rows()).is_empty());
    run.control(":reload");
    run.wait_for("the explicit reload", |rows| steps(rows).last().is_some_and(|s| s["marker"] == 7.0));
    // on_reload ran once, and a REPL line sees both state and cfg: lr = 1 * 0.05 * 20.
    run.control("state.opt:set_lr(state.reloads * cfg.lr * 20)");
    run.wait_for("the lr set from state and cfg", |rows| steps(rows).last().is_some_and(|s| s["lr"] == 1.0));
    let out = run.finish();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("> state.opt:set_lr(0.5)") && t.contains("paused") && t.contains("resumed"), "{t}");
}

#[test]
fn control_lines_change_settings_live_and_quit_runs_finish() {
    let run = Run::start(&["--no-watch"]);
    // log_every is honoured while running: every step gets a line from here on.
    run.control("cfg.log_every = 1");
    let from = steps(&run.rows()).len();
    run.wait_for("more steps", |rows| steps(rows).len() > from + 12);
    // The seed cannot change mid-run: it is put back, with a message.
    run.control("cfg.seed = 5");
    // Errors in control lines are labelled as such.
    run.control("error('from the fifo')");
    run.control("print('seed is', cfg.seed)");
    run.control(":quit");
    let out = run.wait();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "a quit asked for is a success: {t}");
    assert!(t.contains("stopped after") && t.matches("finish ran").count() == 1, "finish runs once, also on :quit: {t}");
    assert!(t.contains("control:1: from the fifo"), "{t}");
    assert!(t.contains("cfg.seed seeds a run at its start") && t.contains("seed is\tnil"), "{t}");
    let numbers: Vec<u64> = t.lines().filter_map(|l| l.strip_prefix("step ")?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()).collect();
    assert!(numbers.windows(2).any(|w| w[1] == w[0] + 1 && w[0] > 1 && w[0] % 10 != 0), "consecutive step lines after log_every = 1: {numbers:?}");
}

/// The README's example recipe: its first Lua block, as a reader copies it.
fn readme_recipe() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("```lua\n").expect("the README has a Lua block") + 7;
    let end = start + readme[start..].find("```").unwrap();
    readme[start..end].to_string()
}

#[test]
fn the_readmes_control_example_changes_the_learning_rate_the_steps_report() {
    let recipe = readme_recipe();
    assert!(recipe.contains("mt.sched.cosine") && recipe.contains("lr = state.opt:get_lr()"), "the README's recipe is scheduled:\n{recipe}");
    let run = Run::start_recipe(|_| recipe.clone(), &["--no-watch", "steps=100000000"], false);
    // Past the schedule's 10 warm-up steps, the lr is near the recipe's 1e-2.
    let rows = run.wait_for("the steps after the warm-up", |rows| steps(rows).len() > 12);
    let before = steps(&rows).last().unwrap()["lr"].as_f64().unwrap();
    assert!(before > 5e-3, "{before}");
    // The README's line, as written there.
    run.control("state.opt:set_lr(1e-4)");
    let rows = run.wait_for("the new lr", |rows| steps(rows).last().is_some_and(|s| s["lr"].as_f64().unwrap() < 2e-4));
    let after = steps(&rows).last().unwrap()["lr"].as_f64().unwrap();
    assert!(after > 0.9e-4 && after <= 1e-4, "the schedule goes on from the new lr: {after}");
    run.control(":quit");
    let out = run.wait();
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn sighup_reloads() {
    let run = Run::start(&["--no-watch"]);
    // A shebang line is allowed on reload as on the first load.
    run.write_text(&format!("#!/usr/bin/env -S moontune run\n{}", recipe(&run.dir.path().join("stop"), 5, 1.0)));
    unsafe { libc::kill(run.child.id() as i32, libc::SIGHUP) };
    run.wait_for("the reload", |rows| steps(rows).last().is_some_and(|s| s["marker"] == 5.0));
    let out = run.finish();
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_new_step_that_fails_at_once_is_put_back() {
    let run = Run::start(&[]);
    run.write_text(&recipe(&run.dir.path().join("stop"), 9, 1.0).replace("local loss =", "local loss = nil + 1 --"));
    let rows = run.wait_for("the failed first call", |rows| reloads(rows).iter().any(|r| r["result"] == "error"));
    let failed = reloads(&rows).into_iter().find(|r| r["result"] == "error").unwrap().clone();
    let rows = run.wait_for("more steps on the old version", |rows| steps(rows).len() > steps(&rows_until(rows, &failed)).len() + 3);
    let out = run.finish();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(failed["version"], 1, "{failed}");
    let message = failed["error"].as_str().unwrap();
    assert!(message.contains("first call") && message.contains("train.lua:"), "{message}");
    assert!(steps(&rows).iter().all(|s| s["marker"] == 1.0));
}

fn rows_until(rows: &[Value], marker: &Value) -> Vec<Value> {
    rows.iter().take_while(|r| *r != marker).cloned().collect()
}
