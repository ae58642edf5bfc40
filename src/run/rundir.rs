//! The run directory `runs/<recipe>-<timestamp>/`: the resolved config (config.json), a copy of
//! the recipe, metrics.jsonl with one JSON object per step and per evaluation, the latest value of
//! each panel (panels.json), checkpoints/, and the report (report.html, report/).

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};

use super::event::{Metrics, Panel};
use crate::io::write_atomic;

pub struct RunDir {
    pub path: PathBuf,
    /// None on a data-parallel run's other ranks: only the main rank writes the directory.
    metrics: Option<BufWriter<File>>,
}

impl RunDir {
    /// Makes a new directory under `root` named after the recipe and the current time.
    pub fn create(root: &Path, recipe: &Path) -> Result<RunDir> {
        let stem = recipe.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "recipe".into());
        let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
        let mut path = root.join(format!("{stem}-{stamp}"));
        let mut n = 1;
        while path.exists() {
            n += 1;
            path = root.join(format!("{stem}-{stamp}-{n}"));
        }
        fs::create_dir_all(&path).with_context(|| format!("cannot create run directory {}", path.display()))?;
        if let Ok(src) = fs::read(recipe) {
            write_atomic(&path.join("recipe.lua"), &src)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path.join("metrics.jsonl"))?;
        Ok(RunDir { path, metrics: Some(BufWriter::new(file)) })
    }

    /// Opens an existing run directory to continue it after its checkpoint of `step`: rows of
    /// metrics.jsonl after that step (from the part of the run the checkpoint does not hold) are
    /// dropped, and a `resume` row marks where the run continued.
    pub fn resume(path: &Path, step: u64, seconds: f64) -> Result<RunDir> {
        let file = path.join("metrics.jsonl");
        let text = fs::read_to_string(&file).unwrap_or_default();
        let kept: String = text
            .lines()
            .filter(|l| serde_json::from_str::<Value>(l).ok().and_then(|v| v.get("step").and_then(|s| s.as_u64())).is_some_and(|s| s <= step))
            .map(|l| format!("{l}\n"))
            .collect();
        write_atomic(&file, kept.as_bytes())?;
        let metrics = OpenOptions::new().create(true).append(true).open(&file)?;
        let mut dir = RunDir { path: path.to_path_buf(), metrics: Some(BufWriter::new(metrics)) };
        let mut row = Map::new();
        row.insert("kind".into(), json!("resume"));
        row.insert("step".into(), json!(step));
        row.insert("time".into(), json!(seconds));
        dir.write_row(row)?;
        Ok(dir)
    }

    /// The main rank's directory as another rank of a data-parallel run sees it: it writes
    /// nothing there.
    pub fn follower(path: &Path) -> RunDir {
        RunDir { path: path.to_path_buf(), metrics: None }
    }

    pub fn writes(&self) -> bool {
        self.metrics.is_some()
    }

    pub fn write_config(&self, config: &Value) -> Result<()> {
        if !self.writes() {
            return Ok(());
        }
        write_atomic(&self.path.join("config.json"), serde_json::to_string_pretty(config)?.as_bytes())
    }

    /// Appends `{"kind": kind, "step": step, "time": seconds, <metrics>}` and flushes it.
    pub fn log_metrics(&mut self, kind: &str, step: u64, seconds: f64, metrics: &Metrics) -> Result<()> {
        let mut row = Map::new();
        row.insert("kind".into(), json!(kind));
        row.insert("step".into(), json!(step));
        row.insert("time".into(), json!(seconds));
        for (name, value) in metrics {
            row.insert(name.clone(), if value.is_finite() { json!(value) } else { json!(value.to_string()) });
        }
        self.write_row(row)
    }

    /// Appends `{"kind": "reload", "step", "time", "version", "result": "ok" | "error", "error"?}`.
    pub fn log_reload(&mut self, step: u64, seconds: f64, version: u32, error: Option<&str>) -> Result<()> {
        let mut row = Map::new();
        row.insert("kind".into(), json!("reload"));
        row.insert("step".into(), json!(step));
        row.insert("time".into(), json!(seconds));
        row.insert("version".into(), json!(version));
        row.insert("result".into(), json!(if error.is_some() { "error" } else { "ok" }));
        if let Some(e) = error {
            row.insert("error".into(), json!(e));
        }
        self.write_row(row)
    }

    /// Keeps the latest value of each panel (a confusion matrix, …) in panels.json, for reports.
    pub fn log_panels(&self, step: u64, panels: &[Panel]) -> Result<()> {
        if panels.is_empty() || !self.writes() {
            return Ok(());
        }
        let file = self.path.join("panels.json");
        let mut saved: Vec<Value> = fs::read_to_string(&file).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
        for p in panels {
            saved.retain(|v| v.get("name").and_then(|n| n.as_str()) != Some(p.name.as_str()));
            saved.push(json!({ "name": p.name, "step": step, "rows": p.rows, "cols": p.cols, "values": p.values }));
        }
        saved.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        write_atomic(&file, serde_json::to_string(&saved)?.as_bytes())
    }

    /// Appends one `{"kind": "panel", "step", "time", "name", "rows", "cols", "values"}` row per
    /// panel (an evaluation's fusion weights, confusion matrix, …); rows of the other kinds stay
    /// numbers only.
    pub fn log_panel_rows(&mut self, step: u64, seconds: f64, panels: &[Panel]) -> Result<()> {
        for p in panels {
            let mut row = Map::new();
            row.insert("kind".into(), json!("panel"));
            row.insert("step".into(), json!(step));
            row.insert("time".into(), json!(seconds));
            row.insert("name".into(), json!(p.name));
            row.insert("rows".into(), json!(p.rows));
            row.insert("cols".into(), json!(p.cols));
            row.insert("values".into(), json!(p.values.iter().map(|r| r.iter().map(|v| if v.is_finite() { json!(v) } else { Value::Null }).collect::<Vec<_>>()).collect::<Vec<_>>()));
            self.write_row(row)?;
        }
        Ok(())
    }

    fn write_row(&mut self, row: Map<String, Value>) -> Result<()> {
        let Some(metrics) = &mut self.metrics else { return Ok(()) };
        writeln!(metrics, "{}", Value::Object(row))?;
        metrics.flush()?;
        Ok(())
    }
}
