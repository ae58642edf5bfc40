//! Data-parallel runs under `moontune launch`, on CPU with Gloo over loopback:
//! - the collectives give hand-computed values on 1, 2 and 3 ranks in every dtype used;
//! - after one backward every rank's gradients equal one process's on the ranks' batches
//!   together (2 and 3 ranks, 1e-6 relative to the largest gradient; the model in float64, so
//!   that the check sees the averaging rather than float32's summation order: 2 and 4 ranks
//!   then differ by ~1e-15, 3 ranks by ~1e-7, the division by 3; also with gradient
//!   checkpointing);
//! - 20 AdamW steps on 2 ranks end with the same weights on both, equal to one process with
//!   the doubled batch (1e-5);
//! - a rank killed mid-run stops the others with an error naming it, the run directory and the
//!   last checkpoint stay whole, and `--resume` on 2 ranks ends with the weights of a run that
//!   was never stopped (each rank's random stream and data position are in the checkpoint);
//! - a recipe edited mid-run reloads on every rank at the same step;
//! - a collective still waiting for a rank after `--timeout` is an error naming it;
//! - ranks started by torchrun, or as srun starts them (rank 0 serving the store), meet too;
//! - `--backend gloo` runs the collectives (on one rank too, through a group of one); an unknown backend, and NCCL on a machine without a
//!   GPU (from the launcher, or from the environment: the NCCL backend loads and finds no GPU),
//!   are errors saying so;
//! - an evaluation iterates this rank's share and its numbers are combined across ranks;
//! - Ctrl-C stops every rank after the same step.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod scratch;
use scratch::ScratchDir;

fn moontune() -> Command {
    Command::new(env!("CARGO_BIN_EXE_moontune"))
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn data_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("MOONTUNE_TEST_DATA").map(PathBuf::from).unwrap_or_else(|| root().join("../shared/data"));
    if dir.join("models/stories260K").exists() {
        Some(std::fs::canonicalize(dir).unwrap())
    } else {
        println!("SKIPPED dist tests: no shared test data (models/stories260K) at $MOONTUNE_TEST_DATA or ../shared/data");
        None
    }
}


fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `moontune launch --nproc N` (N = 0: a plain `moontune run`) of `args`, headless; panics
/// with the output when it fails.
fn launch(nproc: usize, dir: &Path, args: &[&str]) -> String {
    let mut cmd = moontune();
    if nproc == 0 {
        cmd.arg("run");
    } else {
        cmd.args(["launch", "--nproc", &nproc.to_string(), "--timeout", "60"]);
    }
    let out = cmd.arg("--headless").arg("--runs-dir").arg(dir.join("runs")).args(args).current_dir(root()).output().unwrap();
    let shown = text(&out);
    assert!(out.status.success(), "{nproc} ranks: {args:?} failed:\n{shown}");
    shown
}

/// `moontune launch --nproc 2 --headless --runs-dir RUNS ARGS...`, its output piped, to spawn.
fn two_ranks(runs: &Path, args: &[&str]) -> Command {
    let mut cmd = moontune();
    cmd.args(["launch", "--nproc", "2", "--headless", "--runs-dir"]).arg(runs).args(args).current_dir(root()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// The largest difference between `reference` and each of `others`, and the largest value.
fn compare(reference: &Path, others: &[PathBuf]) -> (f64, f64) {
    let files = std::iter::once(reference.to_path_buf()).chain(others.iter().cloned()).map(|p| p.display().to_string()).collect::<Vec<_>>().join(" ");
    let out = moontune().args(["run", "tests/dist/compare.lua"]).env("MOONTUNE_COMPARE", files).current_dir(root()).output().unwrap();
    let shown = text(&out);
    assert!(out.status.success(), "compare failed:\n{shown}");
    let words: Vec<&str> = shown.split_whitespace().collect();
    let value = |name: &str| words.iter().position(|w| *w == name).map(|i| words[i + 1].parse::<f64>().unwrap()).unwrap();
    (value("max_diff"), value("max_abs"))
}

#[test]
fn collectives_give_hand_computed_values() {
    let dir = ScratchDir::new("dist-collectives");
    for nproc in [0, 2, 3] {
        let shown = launch(nproc, &dir, &["tests/dist/collectives.lua"]);
        let n = nproc.max(1);
        assert!(shown.contains(&format!("collectives: rank 0 of {n}, 7 dtypes checked")), "{shown}");
    }
}

#[test]
fn gradients_equal_one_process_on_the_ranks_batches_together() {
    let Some(data) = data_dir() else { return };
    let dir = ScratchDir::new("dist-grads");
    let data = format!("data={}", data.display());
    // 2 and 3 ranks, and 2 ranks recomputing each layer in backward (gradient checkpointing).
    for (nproc, checkpointing) in [(2usize, false), (3, false), (2, true)] {
        let many = dir.join(format!("ranks{nproc}-{checkpointing}"));
        let one = dir.join(format!("one{nproc}-{checkpointing}"));
        std::fs::create_dir_all(&many).unwrap();
        std::fs::create_dir_all(&one).unwrap();
        let checkpointing = format!("checkpointing={checkpointing}");
        launch(nproc, &dir, &["tests/dist/train.lua", "mode=grads", "dtype=float64", "batch=2", &checkpointing, &data, &format!("out={}", many.display())]);
        launch(0, &dir, &["tests/dist/train.lua", "mode=grads", "dtype=float64", &format!("batch={}", 2 * nproc), &data, &format!("out={}", one.display())]);
        let ranks: Vec<PathBuf> = (0..nproc).map(|r| many.join(format!("grads-rank{r}.safetensors"))).collect();
        let (diff, largest) = compare(&one.join("grads-rank0.safetensors"), &ranks);
        println!("{nproc} ranks ({checkpointing}): gradients differ from one process's by {diff:.3e} (largest {largest:.3e})");
        assert!(largest > 1e-3, "the gradients are all zero: the test would prove nothing");
        assert!(diff <= 1e-6 * largest.max(1.0), "{nproc} ranks: gradients differ by {diff:e}");
    }
}

#[test]
fn adamw_on_two_ranks_equals_one_process_with_the_doubled_batch() {
    let Some(data) = data_dir() else { return };
    let dir = ScratchDir::new("dist-adamw");
    let data = format!("data={}", data.display());
    let (many, one) = (dir.join("ranks"), dir.join("one"));
    std::fs::create_dir_all(&many).unwrap();
    std::fs::create_dir_all(&one).unwrap();
    let shown = launch(2, &dir, &["tests/dist/train.lua", "mode=train", "steps=20", "batch=2", &data, &format!("out={}", many.display())]);
    // `tokens` is summed over the ranks: 2 ranks × 2 rows × 24 tokens.
    assert!(shown.contains("tokens 96"), "{shown}");
    launch(0, &dir, &["tests/dist/train.lua", "mode=train", "steps=20", "batch=4", &data, &format!("out={}", one.display())]);
    let ranks = [many.join("train-rank0.safetensors"), many.join("train-rank1.safetensors")];
    let (between, _) = compare(&ranks[0], &ranks[1..]);
    let (diff, largest) = compare(&one.join("train-rank0.safetensors"), &ranks);
    println!("after 20 steps: the ranks differ by {between:.3e}, from one process by {diff:.3e} (largest {largest:.3e})");
    assert!(between <= 1e-5, "the ranks drifted apart by {between:e}");
    assert!(diff <= 1e-5, "2 ranks differ from one process by {diff:e}");
}

/// The pid of `launcher`'s child that has RANK=`rank` in its environment.
fn rank_pid(launcher: u32, rank: usize) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)).and_then(|p| p.parse::<u32>().ok());
        if ppid != Some(launcher) {
            continue;
        }
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if env.split(|b| *b == 0).any(|kv| kv == format!("RANK={rank}").as_bytes()) {
            return Some(pid);
        }
    }
    None
}

fn wait_for(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn metric_steps(run: &Path, kind: &str) -> Vec<u64> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == kind)
        .map(|v| v["step"].as_u64().unwrap())
        .collect()
}

#[test]
fn a_killed_rank_stops_the_others_and_the_run_resumes_exactly() {
    let Some(data) = data_dir() else { return };
    let dir = ScratchDir::new("dist-killed");
    let data = format!("data={}", data.display());
    let settings = ["tests/dist/train.lua", "mode=train", "steps=40", "batch=2", "save_every=5", "noise=0.5", data.as_str()];
    // The run never stopped, for reference.
    let straight = dir.join("straight");
    std::fs::create_dir_all(&straight).unwrap();
    let out = format!("out={}", straight.display());
    launch(2, &straight, &[&settings[..], &[out.as_str()]].concat());
    // The same run, rank 1 killed after the checkpoint of step 10.
    let out = format!("out={}", dir.display());
    let mut launcher = two_ranks(&dir.join("runs"), &[&["--timeout", "20"], &settings[..], &[out.as_str(), "pause=0.05"]].concat()).spawn().unwrap();
    let start = Instant::now();
    let run = loop {
        assert!(start.elapsed() < Duration::from_secs(120), "no checkpoint of step 10 appeared");
        let runs: Vec<PathBuf> = std::fs::read_dir(dir.join("runs")).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
        if let Some(run) = runs.into_iter().find(|r| r.join("checkpoints/step-10").exists()) {
            break run;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let victim = rank_pid(launcher.id(), 1).expect("rank 1 runs under the launcher");
    // SAFETY: a plain kill(2) of a child process of ours.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let killed_at = Instant::now();
    let status = wait_for(&mut launcher, Duration::from_secs(40)).expect("the launcher did not stop within the timeout after a rank was killed");
    let shown = text(&launcher.wait_with_output().unwrap());
    println!("the launcher stopped {:.1} s after rank 1 was killed", killed_at.elapsed().as_secs_f64());
    assert!(!status.success(), "{shown}");
    assert!(shown.contains("rank 1 was lost (was killed by signal 9)"), "rank 0's error names the lost rank:\n{shown}");
    let steps = metric_steps(&run, "step");
    assert!(!steps.is_empty() && steps.windows(2).all(|w| w[1] == w[0] + 1), "metrics.jsonl is whole: {steps:?}");
    let resumed = launch(2, &dir, &["--resume", &run.display().to_string(), "tests/dist/train.lua", data.as_str(), out.as_str(), "pause=0"]);
    assert!(resumed.contains("resumed from"), "{resumed}");
    let steps = metric_steps(&run, "step");
    assert_eq!(steps.last(), Some(&40), "the resumed run reaches its end");
    assert!(steps.windows(2).all(|w| w[1] == w[0] + 1), "each step once after the resume: {steps:?}");
    let ranks = [dir.join("train-rank0.safetensors"), dir.join("train-rank1.safetensors")];
    let (diff, largest) = compare(&straight.join("train-rank0.safetensors"), &ranks);
    println!("resumed on 2 ranks: the weights differ from the run never stopped by {diff:.3e} (largest {largest:.3e})");
    assert_eq!(diff, 0.0, "the resumed run is not the run that was never stopped");
}

const RELOADED: &str = r#"
local mt = require "moontune"
local VERSION = 1
return {
  config = { steps = 400 },
  setup = function(cfg) return {} end,
  step = function(s, cfg)
    local t = mt.clock()
    while mt.clock() - t < 0.01 do end
    mt.dist.barrier()
    return { version = VERSION }
  end,
}
"#;

#[test]
fn an_edit_reloads_on_every_rank_at_the_same_step() {
    let dir = ScratchDir::new("dist-reload");
    let recipe = dir.join("recipe.lua");
    std::fs::write(&recipe, RELOADED).unwrap();
    let mut launcher = two_ranks(&dir.join("runs"), &["--timeout", "30", recipe.to_str().unwrap()]).spawn().unwrap();
    // Edit once the ranks are stepping.
    let start = Instant::now();
    while std::fs::read_dir(dir.join("runs")).ok().and_then(|mut d| d.next()).and_then(|e| e.ok()).is_none_or(|run| metric_steps(&run.path(), "step").len() < 10) {
        assert!(start.elapsed() < Duration::from_secs(60), "the run did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::write(&recipe, RELOADED.replace("VERSION = 1", "VERSION = 2")).unwrap();
    let status = wait_for(&mut launcher, Duration::from_secs(60)).expect("the run did not end");
    let shown = text(&launcher.wait_with_output().unwrap());
    assert!(status.success(), "{shown}");
    let run = std::fs::read_dir(dir.join("runs")).unwrap().flatten().next().unwrap().path();
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let versions: Vec<f64> = rows.iter().filter(|r| r["kind"] == "step").map(|r| r["version"].as_f64().unwrap()).collect();
    // The step's numbers are averaged over the ranks: a step where one rank ran the old code
    // and the other the new would log 1.5.
    assert!(versions.iter().all(|v| *v == 1.0 || *v == 2.0), "the ranks ran different versions at some step: {versions:?}");
    let first_new = versions.iter().position(|v| *v == 2.0).expect("the edit was applied");
    assert!(versions[first_new..].iter().all(|v| *v == 2.0), "{versions:?}");
    assert!(rows.iter().any(|r| r["kind"] == "reload" && r["result"] == "ok"), "{rows:?}");
}

const SLOW_RANK: &str = r#"
local mt = require "moontune"
if mt.dist.rank() == 1 then
  local t = mt.clock()
  while mt.clock() - t < 6 do end
end
mt.dist.all_reduce(mt.tensor.zeros{ 2 })
"#;

#[test]
fn a_collective_past_the_timeout_is_an_error_naming_it() {
    let dir = ScratchDir::new("dist-timeout");
    let script = dir.join("slow.lua");
    std::fs::write(&script, SLOW_RANK).unwrap();
    let start = Instant::now();
    let out = moontune().args(["launch", "--nproc", "2", "--timeout", "2"]).arg(&script).output().unwrap();
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(shown.contains("all_reduce failed on rank 0 of 2") && shown.contains("Timed out"), "{shown}");
    assert!(start.elapsed() < Duration::from_secs(20), "took {:?}", start.elapsed());
}

#[test]
fn the_backend_can_be_chosen_and_nccl_without_a_gpu_is_an_error_saying_so() {
    let dir = ScratchDir::new("dist-backend");
    let shown = launch(2, &dir, &["--backend", "gloo", "tests/dist/collectives.lua"]);
    assert!(shown.contains("collectives: rank 0 of 2, 7 dtypes checked"), "{shown}");
    // A named backend gives even one rank a group, whose collectives go through it.
    let shown = launch(1, &dir, &["--backend", "gloo", "tests/dist/collectives.lua"]);
    assert!(shown.contains("collectives: rank 0 of 1, 7 dtypes checked"), "{shown}");
    let out = moontune().args(["launch", "--nproc", "2", "--backend", "mpi", "tests/dist/collectives.lua"]).current_dir(root()).output().unwrap();
    assert!(!out.status.success() && text(&out).contains("unknown backend 'mpi': expected auto, gloo or nccl"), "{}", text(&out));
    if std::path::Path::new("/dev/nvidiactl").exists() {
        println!("SKIPPED the no-GPU half: this machine has an NVIDIA driver");
        return;
    }
    let out = moontune().args(["launch", "--nproc", "2", "--backend", "nccl", "tests/dist/collectives.lua"]).current_dir(root()).output().unwrap();
    assert!(!out.status.success() && text(&out).contains("--backend nccl"), "{}", text(&out));
    // Ranks told to use NCCL by the environment (as under torchrun) load the NCCL backend, whose
    // constructor finds no GPU; a build without it says that instead.
    let ranks = collectives_on_two_ranks_by_hand(|r| vec![("RANK", r.to_string()), ("WORLD_SIZE", "2".into()), ("LOCAL_RANK", r.to_string()), ("MOONTUNE_DIST_BACKEND", "nccl".into())]);
    for (r, out) in ranks.iter().enumerate() {
        let shown = text(out);
        let why = shown.contains("ProcessGroupNCCL is only supported with GPUs, no GPUs found") || shown.contains("built without the NCCL backend");
        assert!(!out.status.success() && shown.contains(&format!("rank {r} could not set up NCCL for CUDA tensors")) && why, "rank {r}:\n{shown}");
    }
}

#[test]
fn ranks_started_as_srun_starts_them_meet_at_rank_0() {
    let ranks = collectives_on_two_ranks_by_hand(|r| vec![("SLURM_PROCID", r.to_string()), ("SLURM_NTASKS", "2".into()), ("SLURM_LOCALID", r.to_string())]);
    for (r, out) in ranks.iter().enumerate() {
        let shown = text(out);
        assert!(out.status.success() && shown.contains(&format!("collectives: rank {r} of 2")), "rank {r}:\n{shown}");
    }
}

/// Two ranks of `moontune run tests/dist/collectives.lua` started by hand, each with the
/// variables `vars(rank)` gives and a free loopback port for their rendezvous; their outputs.
fn collectives_on_two_ranks_by_hand(vars: impl Fn(usize) -> Vec<(&'static str, String)>) -> Vec<Output> {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let ranks: Vec<Child> = (0..2)
        .map(|r| {
            moontune()
                .args(["run", "tests/dist/collectives.lua"])
                .envs(vars(r))
                .envs([("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", port.as_str()), ("MOONTUNE_DIST_TIMEOUT", "30")])
                .current_dir(root())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    ranks.into_iter().map(|rank| rank.wait_with_output().unwrap()).collect()
}

#[test]
fn torchrun_starts_the_ranks_too() {
    let Some(python) = std::env::var_os("MOONTUNE_PYTHON").map(PathBuf::from) else {
        println!("SKIPPED: MOONTUNE_PYTHON is not set (tools/env.sh sets it), so torchrun cannot be found");
        return;
    };
    let torchrun = python.with_file_name("torchrun");
    let out = Command::new(torchrun)
        .args(["--nproc-per-node", "2", "--no-python"])
        .arg(env!("CARGO_BIN_EXE_moontune"))
        .args(["run", "tests/dist/collectives.lua"])
        .current_dir(root())
        .output()
        .unwrap();
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("collectives: rank 0 of 2") && shown.contains("collectives: rank 1 of 2"), "{shown}");
}

const SHARED_EVAL: &str = r#"
local mt = require "moontune"
local rows = {}
for i = 1, 10 do rows[i] = { x = i } end
return {
  config = { steps = 2, eval_every = 2 },
  setup = function(cfg) return { data = mt.data.from(rows):shuffle{ seed = 1 } } end,
  step = function(s, cfg) return {} end,
  evaluate = function(s, cfg)
    local n, sum = 0, 0
    for ex in s.data:iter() do n = n + 1; sum = sum + ex.x end
    return { examples = n, mean = sum / n, seen_alone = n }
  end,
}
"#;

#[test]
fn evaluation_runs_on_shares_and_its_numbers_are_combined() {
    let dir = ScratchDir::new("dist-eval");
    let recipe = dir.join("eval.lua");
    std::fs::write(&recipe, SHARED_EVAL).unwrap();
    for nproc in [0, 2] {
        let runs = dir.join(format!("runs{nproc}"));
        launch(nproc, &runs, &[recipe.to_str().unwrap()]);
        let run = std::fs::read_dir(runs.join("runs")).unwrap().flatten().next().unwrap().path();
        let rows: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let eval = rows.iter().find(|r| r["kind"] == "eval").expect("an eval row");
        // Each of 2 ranks saw 5 examples (`seen_alone`, averaged); `examples` is summed.
        let share = if nproc == 0 { 10.0 } else { 5.0 };
        assert_eq!((eval["examples"].as_f64(), eval["mean"].as_f64(), eval["seen_alone"].as_f64()), (Some(10.0), Some(5.5), Some(share)), "{nproc} ranks: {eval}");
    }
}

const LONG: &str = r#"
local mt = require "moontune"
return { config = { steps = 100000 }, step = function()
  local t = mt.clock(); while mt.clock() - t < 0.01 do end
  return { loss = mt.dist.rank() }
end }
"#;

#[test]
fn ctrl_c_stops_every_rank_after_the_same_step() {
    use std::os::unix::process::CommandExt;
    let dir = ScratchDir::new("dist-ctrl-c");
    let recipe = dir.join("long.lua");
    std::fs::write(&recipe, LONG).unwrap();
    // The launcher and rank 0 in a process group of their own, as a terminal's foreground job.
    let mut launcher = two_ranks(&dir.join("runs"), &[recipe.to_str().unwrap()]).process_group(0).spawn().unwrap();
    let start = Instant::now();
    let run = loop {
        assert!(start.elapsed() < Duration::from_secs(60), "the run did not start");
        let run = std::fs::read_dir(dir.join("runs")).ok().and_then(|mut d| d.next()).and_then(|e| e.ok()).map(|e| e.path());
        if let Some(run) = run.filter(|r| metric_steps(r, "step").len() >= 5) {
            break run;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // SAFETY: a plain kill(2) of the process group we made.
    unsafe { libc::kill(-(launcher.id() as i32), libc::SIGINT) };
    let status = wait_for(&mut launcher, Duration::from_secs(30)).expect("the ranks did not stop");
    let shown = text(&launcher.wait_with_output().unwrap());
    assert_eq!(status.code(), Some(130), "{shown}");
    assert!(shown.contains("rank 0 stopped on Ctrl-C") && shown.contains("rank 1 stopped on Ctrl-C"), "{shown}");
    // Every logged step had both ranks (the loss is the mean of ranks 0 and 1).
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let losses: Vec<f64> = text.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).filter(|v| v["kind"] == "step").map(|v| v["loss"].as_f64().unwrap()).collect();
    assert!(!losses.is_empty() && losses.iter().all(|l| *l == 0.5), "{losses:?}");
}
