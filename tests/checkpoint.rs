//! Checkpoints that resume exactly: a 40-step LoRA run on stories260K (a cosine
//! schedule, shuffled SST-2 batches, math.random and torch.randn in the step) run straight, and
//! the same run killed with SIGKILL at a random moment after its step-20 checkpoint and resumed
//! with --resume, end with bitwise-equal trainable weights, optimizer state, random draws and data
//! order; metrics.jsonl holds each step once. An interrupted checkpoint write, a corrupted
//! checkpoint and a run directory without one are each handled without losing anything.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn moontune() -> Command {
    Command::new(env!("CARGO_BIN_EXE_moontune"))
}

fn data_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("MOONTUNE_TEST_DATA").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    if dir.join("models/stories260K").exists() {
        Some(std::fs::canonicalize(dir).unwrap())
    } else {
        println!("SKIPPED checkpoint tests: no shared test data (models/stories260K) at $MOONTUNE_TEST_DATA or ../shared/data");
        None
    }
}

const RECIPE: &str = r#"
local mt = require "moontune"
return {
  config = { steps = 40, save_every = 20, keep_last = 2, seed = 7, lr = 5e-3, data = "", out = "", pause = 0.0 },
  setup = function(cfg)
    local dir = cfg.data .. "/models/stories260K"
    local model = assert(mt.models.load(dir))
    mt.peft.lora(model, { name = "task", r = 4, alpha = 8, targets = { "q_proj", "v_proj" } })
    local tok = assert(mt.tokenizer.load(dir))
    local id = 0
    local rows = assert(mt.data.read(cfg.data .. "/classification/sst2/dev.tsv"))
      :map(function(ex) id = id + 1; ex.id = id; return ex end)
      :tokenize(tok, { field = "sentence", max_length = 24, keep = { "label" } })
      :shuffle{ seed = 3 }:batch{ size = 4 }
    local opt = mt.optim.adamw(model:parameters{ trainable = true }, { lr = cfg.lr })
    local sched = mt.sched.cosine(opt, { warmup = 5, total = cfg.steps })
    return { model = model, opt = opt, sched = sched, it = rows:iter{ epochs = math.huge },
             labels = {}, draws = {}, noise = mt.tensor.zeros{ 4 }, steps = 0 }
  end,
  step = function(s, cfg)
    s.model:train()
    local b = s.it:next()
    local out = s.model{ input_ids = b.input_ids, attention_mask = b.attention_mask, labels = b.labels }
    out.loss:backward()
    s.opt:step(); s.sched:step(); s.opt:zero_grad()
    s.labels[#s.labels + 1] = b.label:sum():item() * 1000 + b.input_ids:sum():item()
    s.draws[#s.draws + 1] = math.random(1, 1000000)
    s.noise = s.noise + mt.tensor.randn{ 4 }
    s.steps = s.steps + 1
    local t = mt.clock()
    while mt.clock() - t < cfg.pause do end
    return { loss = out.loss }
  end,
  finish = function(s, cfg)
    local out = {}
    for name, p in pairs(s.model:named_parameters{ trainable = true }) do out["param/" .. name] = p end
    local sd = s.opt:state_dict()
    for k, st in pairs(sd.state) do
      for slot, v in pairs(st) do
        if mt.tensor.is_tensor(v) then out["opt/" .. k .. "/" .. slot] = v end
      end
    end
    out.noise = s.noise
    out.labels = mt.tensor.tensor(s.labels)
    out.draws = mt.tensor.tensor(s.draws)
    out.lr = mt.tensor.tensor{ s.opt:param_groups()[1].lr }
    out.steps = mt.tensor.tensor{ s.steps }
    assert(mt.save(cfg.out, out))
  end,
}
"#;

fn run(args: &[&str], cwd: &Path) -> std::process::Output {
    moontune().args(args).current_dir(cwd).output().unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn the_run_dir(runs: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(runs).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

fn step_rows(run_dir: &Path) -> Vec<u64> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["kind"] == "step")
        .map(|r| r["step"].as_u64().unwrap())
        .collect()
}

#[test]
fn a_killed_run_resumes_bit_for_bit() {
    let Some(data) = data_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("resume.lua");
    std::fs::write(&recipe, RECIPE).unwrap();
    let data_arg = format!("data={}", data.display());
    let straight_out = dir.path().join("straight.safetensors");
    let runs_straight = dir.path().join("runs-straight");
    let out = run(&["run", "--headless", "--no-watch", "--runs-dir", runs_straight.to_str().unwrap(), recipe.to_str().unwrap(), &data_arg, &format!("out={}", straight_out.display())], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(step_rows(&the_run_dir(&runs_straight)), (1..=40).collect::<Vec<_>>());

    // The same run, killed at a random moment after its step-20 checkpoint.
    let resumed_out = dir.path().join("resumed.safetensors");
    let runs = dir.path().join("runs");
    let mut child = moontune()
        .args(["run", "--headless", "--no-watch", "--runs-dir", runs.to_str().unwrap(), recipe.to_str().unwrap(), &data_arg, &format!("out={}", resumed_out.display()), "pause=0.02"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let latest = loop {
        if let Ok(entries) = std::fs::read_dir(&runs) {
            if let Some(run_dir) = entries.flatten().next() {
                let latest = run_dir.path().join("checkpoints/latest");
                if latest.exists() {
                    break latest;
                }
            }
        }
        assert!(started.elapsed() < Duration::from_secs(120), "no checkpoint after two minutes");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before its first checkpoint");
        std::thread::sleep(Duration::from_millis(5));
    };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    std::thread::sleep(Duration::from_millis(u64::from(nanos % 300)));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!resumed_out.exists(), "the run finished before it was killed");
    assert_eq!(std::fs::read_to_string(&latest).unwrap(), "step-20");
    let run_dir = the_run_dir(&runs);

    // What an interrupted checkpoint write leaves: a temporary directory, never read.
    let partial = run_dir.join("checkpoints/.step-40.tmp-99999");
    std::fs::create_dir_all(&partial).unwrap();
    std::fs::write(partial.join("tensors.safetensors"), b"torn").unwrap();

    let out = run(&["run", "--headless", "--no-watch", recipe.to_str().unwrap(), "--resume", run_dir.to_str().unwrap(), "pause=0"], dir.path());
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("resumed from") && shown.contains("step-20"), "{shown}");
    assert_eq!(std::fs::read(&straight_out).unwrap(), std::fs::read(&resumed_out).unwrap(), "the resumed run's weights, optimizer state, draws and data order differ");
    assert_eq!(step_rows(&run_dir), (1..=40).collect::<Vec<_>>(), "each step once in metrics.jsonl");
    assert!(!partial.exists(), "the torn write was cleaned up");
    // keep_last = 2: the two newest checkpoints.
    let kept: Vec<String> = std::fs::read_dir(run_dir.join("checkpoints")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).filter(|n| n.starts_with("step-")).collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
}

#[test]
fn resume_refuses_missing_and_corrupted_checkpoints() {
    let Some(data) = data_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("resume.lua");
    std::fs::write(&recipe, RECIPE).unwrap();
    let data_arg = format!("data={}", data.display());
    let runs = dir.path().join("runs");
    let out = run(&["run", "--headless", "--no-watch", "--runs-dir", runs.to_str().unwrap(), recipe.to_str().unwrap(), &data_arg, "steps=3", "save_every=0", &format!("out={}", dir.path().join("o").display())], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let run_dir = the_run_dir(&runs);
    let before = std::fs::read(run_dir.join("metrics.jsonl")).unwrap();
    let out = run(&["run", "--headless", recipe.to_str().unwrap(), "--resume", run_dir.to_str().unwrap()], dir.path());
    assert!(!out.status.success() && text(&out).contains("holds no checkpoint"), "{}", text(&out));

    let out = run(&["run", "--headless", "--no-watch", "--runs-dir", dir.path().join("runs2").to_str().unwrap(), recipe.to_str().unwrap(), &data_arg, "steps=2", "save_every=1", &format!("out={}", dir.path().join("o2").display())], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let run2 = the_run_dir(&dir.path().join("runs2"));
    std::fs::write(run2.join("checkpoints/step-2/checkpoint.json"), b"{ not json").unwrap();
    let before2 = std::fs::read(run2.join("metrics.jsonl")).unwrap();
    let out = run(&["run", "--headless", recipe.to_str().unwrap(), "--resume", run2.to_str().unwrap()], dir.path());
    assert!(!out.status.success() && text(&out).contains("is corrupted"), "{}", text(&out));
    assert_eq!(std::fs::read(run2.join("metrics.jsonl")).unwrap(), before2, "nothing overwritten");
    assert_eq!(std::fs::read(run_dir.join("metrics.jsonl")).unwrap(), before);
    let out = run(&["run", "--headless", recipe.to_str().unwrap(), "--resume", dir.path().join("nope").to_str().unwrap()], dir.path());
    assert!(!out.status.success() && text(&out).contains("no such run directory"), "{}", text(&out));
}

/// A recipe whose evaluation improves until step 4 and then gets worse.
const EARLY: &str = r#"
local mt = require "moontune"
local curve = { 5, 4, 3, 2, 2.5, 2.6, 2.7, 2.8, 2.9, 3.0 }
return {
  config = { steps = 10, eval_every = 1, save_every = 1, keep_last = 1, keep_best = "eval_loss:min", patience = 3, restore_best = true },
  setup = function(cfg) return { w = mt.tensor.zeros{ 1 }, step = 0 } end,
  step = function(s, cfg) s.step = s.step + 1; s.w:fill_(s.step); return { loss = curve[s.step] } end,
  evaluate = function(s, cfg) return { loss = curve[s.step] } end,
  finish = function(s, cfg) print("finished with w = " .. s.w:item() .. " at step " .. s.step) end,
}
"#;

#[test]
fn keep_best_patience_and_restore_best() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("early.lua");
    std::fs::write(&recipe, EARLY).unwrap();
    let runs = dir.path().join("runs");
    let out = run(&["run", "--headless", "--no-watch", "--runs-dir", runs.to_str().unwrap(), recipe.to_str().unwrap()], dir.path());
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("early stop at step 7: 3 evaluations without a better eval_loss"), "{shown}");
    assert!(shown.contains("restored the best checkpoint") && shown.contains("finished with w = 4.0 at step 4"), "{shown}");
    let run_dir = the_run_dir(&runs);
    let mut kept: Vec<String> = std::fs::read_dir(run_dir.join("checkpoints")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).filter(|n| n.starts_with("step-")).collect();
    kept.sort();
    assert_eq!(kept, vec!["step-4", "step-7"], "the best and the last");
    let out = run(&["run", "--headless", recipe.to_str().unwrap(), "keep_best=acc:up"], dir.path());
    assert!(!out.status.success() && text(&out).contains("direction must be min or max"), "{}", text(&out));
}

/// A recipe whose checkpoint writes are slow (its `save` hook adds a file, then waits), to be
/// killed in the middle of one.
const SLOW_SAVE: &str = r#"
local mt = require "moontune"
return {
  config = { steps = 4, save_every = 2, seed = 1 },
  setup = function(cfg) return { w = mt.tensor.zeros{ 3 }, n = 0 } end,
  step = function(s, cfg) s.n = s.n + 1; s.w:add_(mt.tensor.randn{ 3 }); return { loss = s.w:sum() } end,
  save = function(s, cfg, dir)
    local f = assert(io.open(dir .. "/extra.txt", "w")); f:write("step " .. s.n); f:close()
    if s.n == 4 then local t = mt.clock(); while mt.clock() - t < 30 do end end
  end,
  load = function(s, cfg, dir)
    local f = assert(io.open(dir .. "/extra.txt")); print("load hook read: " .. f:read("a")); f:close()
  end,
  finish = function(s, cfg) print("finished at n = " .. s.n) end,
}
"#;

#[test]
fn a_kill_during_a_checkpoint_write_leaves_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("slow_save.lua");
    std::fs::write(&recipe, SLOW_SAVE).unwrap();
    let runs = dir.path().join("runs");
    let mut child = moontune()
        .args(["run", "--headless", "--no-watch", "--runs-dir", runs.to_str().unwrap(), recipe.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    // Wait for the step-4 write to be under way: its temporary directory holds the hook's file.
    let writing = loop {
        let found = std::fs::read_dir(&runs).ok().and_then(|mut e| e.next()).and_then(|r| {
            let ck = r.ok()?.path().join("checkpoints");
            std::fs::read_dir(&ck).ok()?.flatten().map(|e| e.path()).find(|p| p.file_name().unwrap().to_string_lossy().starts_with(".step-4.tmp-") && p.join("extra.txt").exists())
        });
        if let Some(p) = found {
            break p;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the step-4 checkpoint write never started");
        std::thread::sleep(Duration::from_millis(10));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let run_dir = writing.parent().unwrap().parent().unwrap().to_path_buf();
    assert_eq!(std::fs::read_to_string(run_dir.join("checkpoints/latest")).unwrap(), "step-2");
    assert!(!run_dir.join("checkpoints/step-4").exists());
    // Resuming takes the previous checkpoint; the recipe's load hook reads what its save hook wrote.
    let out = run(&["run", "--headless", recipe.to_str().unwrap(), "--resume", run_dir.to_str().unwrap(), "save_every=0"], dir.path());
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("load hook read: step 2") && shown.contains("finished at n = 4"), "{shown}");
}
