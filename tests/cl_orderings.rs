//! The continual-learning orderings on order 1 (sst2 → agnews → amazon → qqp) at the budget
//! BENCHMARKS.md reports, scripts/continual.lua's defaults (50 steps of 16 per task, lr 3e-4,
//! max_len 32, 800/200 examples per task, 4 replayed rows a batch; seed 0): naive fine-tuning forgets, and replay, EWC and O-LoRA each forget less. It
//! takes about 8 minutes on 2 cores, more than the suite's budget, so it runs only with
//! MOONTUNE_CL_ORDERINGS=1 (`./dev cl-orderings`); otherwise it says it was skipped.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn replay_ewc_and_olora_forget_less_than_naive() {
    if std::env::var_os("MOONTUNE_CL_ORDERINGS").is_none() || std::env::var_os("MOONTUNE_MINILM").is_none() {
        println!("SKIPPED the continual-learning orderings: set MOONTUNE_CL_ORDERINGS=1 (./dev cl-orderings; about 8 minutes on 2 cores)");
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("moontune-cl-orderings-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_moontune"))
        .args(["run", "--headless", "--runs-dir"])
        .arg(&dir)
        .args(["scripts/cl_benchmark.lua", "order=1", "seeds=0", "strategies=naive,replay,ewc,olora",
               "args=steps_per_task=50 batch=16 max_len=32 train_per_task=800 test_per_task=200 lr=3e-4"])
        .current_dir(&root)
        .output()
        .unwrap();
    let shown = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{shown}");
    let run = std::fs::read_dir(&dir).unwrap().flatten().next().unwrap().path();
    let csv = std::fs::read_to_string(run.join("results.csv")).unwrap();
    println!("{csv}");
    let forgetting = |strategy: &str| -> f64 {
        let line = csv.lines().find(|l| l.starts_with(&format!("{strategy},"))).unwrap();
        line.split(',').nth(3).unwrap().parse().unwrap()
    };
    // Measured (seeds 0 and 1): naive 0.138 and 0.283; replay 0.020 and 0.007 with 8 replayed
    // rows a batch, 0.030 (seed 0) with the default 4; EWC 0.085 and 0.057; O-LoRA 0.010 and
    // 0.030. The margins are below the smallest gap seen.
    let naive = forgetting("naive");
    assert!(naive > 0.10, "naive forgetting {naive}");
    for (strategy, margin) in [("replay", 0.05), ("ewc", 0.03), ("olora", 0.05)] {
        let f = forgetting(strategy);
        assert!(f < naive - margin, "{strategy} forgetting {f} against naive {naive}");
    }
}
