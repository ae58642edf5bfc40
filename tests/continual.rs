//! scripts/continual.lua on a tiny budget (2 tasks of the O-LoRA benchmark, a few steps each):
//! every strategy runs to the end, fills the accuracy matrix row by row and logs the
//! continual-learning metrics after each task; a strategy that does not exist is refused with
//! the known ones listed before any training.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn ready() -> bool {
    let data = std::env::var_os("MOONTUNE_TEST_DATA").map(PathBuf::from).unwrap_or_else(|| root().join("../shared/data"));
    let minilm = std::env::var_os("MOONTUNE_MINILM").is_some();
    if !data.join("continual/olora/SC/SST-2/labels.json").exists() || !minilm {
        println!("SKIPPED continual tests: the O-LoRA data (../shared/data/continual/olora) or all-MiniLM-L6-v2 ($MOONTUNE_MINILM, set by tools/env.sh) is missing");
        return false;
    }
    true
}

fn run(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_moontune"))
        .args(["run", "--headless", "--runs-dir"])
        .arg(dir)
        .arg("scripts/continual.lua")
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn every_strategy_fills_the_accuracy_matrix() {
    if !ready() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("moontune-continual-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for strategy in ["naive", "joint", "replay", "ewc"] {
        let runs = dir.join(strategy);
        let (ok, shown) = run(&runs, &[&format!("strategy={strategy}"), "tasks=sst2,cb", "steps_per_task=2", "train_per_task=32", "test_per_task=16", "batch=8", "fisher_batches=1"]);
        assert!(ok, "{strategy}:\n{shown}");
        assert!(shown.contains(&format!("{strategy} on sst2 → cb: average accuracy")), "{shown}");
        let run = std::fs::read_dir(&runs).unwrap().flatten().next().unwrap().path();
        let rows: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let ends: Vec<&serde_json::Value> = rows.iter().filter(|r| r["kind"] == "step" && r.get("average_accuracy").is_some()).collect();
        assert_eq!(ends.len(), 2, "{strategy}: one row of metrics after each task");
        assert_eq!(ends.iter().map(|r| r["step"].as_u64().unwrap()).collect::<Vec<_>>(), vec![2, 4]);
        let last = ends[1];
        for key in ["average_accuracy", "forgetting", "bwt", "fwt", "average_incremental_accuracy", "acc_sst2", "acc_cb"] {
            let v = last[key].as_f64().unwrap_or_else(|| panic!("{strategy}: {key} missing in {last}"));
            assert!(v.is_finite(), "{strategy}: {key} = {v}");
        }
        let avg = (last["acc_sst2"].as_f64().unwrap() + last["acc_cb"].as_f64().unwrap()) / 2.0;
        assert!((last["average_accuracy"].as_f64().unwrap() - avg).abs() < 1e-9, "average accuracy is the last row's mean");
        let panels = std::fs::read_to_string(run.join("panels.json")).unwrap();
        assert!(panels.contains("\"accuracy\""), "the accuracy matrix is a panel: {panels}");
    }
    let (ok, shown) = run(&dir.join("bogus"), &["strategy=forget_nothing", "tasks=sst2,cb"]);
    assert!(!ok && shown.contains("unknown strategy 'forget_nothing'") && shown.contains("ewc, joint, naive, replay"), "{shown}");
}
