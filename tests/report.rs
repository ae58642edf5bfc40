//! Reports: a finished run's directory has report.html with an image (SVG and PNG) per metric and
//! per panel, before/after tables and the worst examples; `moontune report A B` overlays runs;
//! and headless Chromium renders the page with every image it references loaded (its screenshot
//! is kept in target/test-artifacts/report.png).

use std::path::{Path, PathBuf};
use std::process::Command;

fn moontune() -> Command {
    Command::new(env!("CARGO_BIN_EXE_moontune"))
}

const RECIPE: &str = r#"
local mt = require "moontune"
return {
  config = { steps = 30, eval_every = 10, scale = 1.0 },
  setup = function() return { i = 0 } end,
  step = function(s, cfg) s.i = s.i + 1; return { loss = cfg.scale * 3 / s.i, lr = 1e-3 * (1 - s.i / 30) } end,
  evaluate = function(s, cfg)
    local preds, refs = { "pos", "neg", "pos", "pos", "neg" }, { "pos", "neg", "neg", "pos", "pos" }
    return { loss = cfg.scale * 2 / s.i, acc = mt.metrics.accuracy(preds, refs) + s.i / 100,
             panels = { confusion = mt.metrics.confusion_matrix(preds, refs, { labels = { "neg", "pos" } }) } }
  end,
  finish = function(s, cfg, dir)
    assert(mt.eval.write_errors(dir .. "/errors.jsonl", { { input = "a <b> & c", prediction = "pos", reference = "neg", score = -1.5 } }))
  end,
}
"#;

fn run_once(dir: &Path, runs: &Path, scale: &str) -> PathBuf {
    let recipe = dir.join("report_me.lua");
    std::fs::write(&recipe, RECIPE).unwrap();
    let before: Vec<PathBuf> = std::fs::read_dir(runs).map(|r| r.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    let out = moontune().args(["run", "--headless", "--no-watch", "--runs-dir"]).arg(runs).arg(&recipe).arg(format!("scale={scale}")).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    std::fs::read_dir(runs).unwrap().flatten().map(|e| e.path()).find(|p| !before.contains(p)).unwrap()
}

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|name| {
        std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.exists()))
    })
}

#[test]
fn a_finished_run_has_a_report_that_renders() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let run_dir = run_once(dir.path(), &runs, "1.0");
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    for metric in ["acc", "loss", "lr"] {
        for ext in ["svg", "png"] {
            let image = run_dir.join(format!("report/metric-{metric}.{ext}"));
            assert!(std::fs::metadata(&image).unwrap().len() > 1000, "{}", image.display());
        }
        assert!(html.contains(&format!("report/metric-{metric}.png")), "the page shows {metric}");
    }
    let panel = std::fs::read_dir(run_dir.join("report")).unwrap().flatten().any(|e| e.file_name().to_string_lossy().contains("confusion"));
    assert!(panel, "the confusion matrix is drawn");
    assert!(html.contains("Before and after") && html.contains("a &lt;b&gt; &amp; c"), "tables and escaped examples");
    let png = std::fs::read(run_dir.join("report/metric-loss.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    // Two runs overlaid.
    let second = run_once(dir.path(), &runs, "2.0");
    let out_dir = dir.path().join("compare");
    let out = moontune().arg("report").arg(&run_dir).arg(&second).arg("--out").arg(&out_dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let compare = std::fs::read_to_string(out_dir.join("report.html")).unwrap();
    assert!(compare.contains("2 runs") && out_dir.join("report/metric-loss.svg").exists());
    let svg = std::fs::read_to_string(out_dir.join("report/metric-loss.svg")).unwrap();
    let name = |d: &Path| d.file_name().unwrap().to_string_lossy().to_string();
    assert!(svg.contains(&format!("{} train", name(&run_dir))) && svg.contains(&format!("{} eval", name(&second))), "a legend entry per run and kind");
    let bad = moontune().arg("report").arg(dir.path()).output().unwrap();
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("is not a run directory"));

    let Some(browser) = chromium() else {
        println!("SKIPPED the browser check of report.html: no chromium on PATH (./dev test installs Debian's where it can)");
        return;
    };
    let page = format!("file://{}", run_dir.join("report.html").display());
    let common = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--allow-file-access-from-files", "--virtual-time-budget=10000"];
    let dom = Command::new(&browser).args(common).arg("--dump-dom").arg(&page).output().unwrap();
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    let images = html.matches("<img ").count();
    assert!(images >= 4, "{images} images");
    assert!(dom_text.contains(&format!("data-images-loaded=\"{images}/{images}\"")), "not every image loaded:\n{}", dom_text.lines().find(|l| l.contains("<body")).unwrap_or("no body"));
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("report.png");
    let _ = std::fs::remove_file(&shot);
    let out = Command::new(&browser).args(common).arg(format!("--screenshot={}", shot.display())).arg("--window-size=1500,2200").arg(&page).output().unwrap();
    assert!(shot.exists() && std::fs::metadata(&shot).unwrap().len() > 10_000, "no screenshot: {}", String::from_utf8_lossy(&out.stderr));
    println!("screenshot of the report: {}", shot.display());
}
