//! A run directory as a report reads it: the rows of metrics.jsonl gathered into series per
//! metric (train rows per step, eval rows per evaluation), the last value of each panel
//! (panels.json), the config, and the error-analysis file if the recipe wrote one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

#[derive(Deserialize, Clone, Debug)]
pub struct SavedPanel {
    pub name: String,
    pub step: u64,
    pub rows: Vec<String>,
    pub cols: Vec<String>,
    pub values: Vec<Vec<f64>>,
}

pub struct RunLog {
    pub name: String,
    pub dir: PathBuf,
    pub train: BTreeMap<String, Vec<(f64, f64)>>,
    pub eval: BTreeMap<String, Vec<(f64, f64)>>,
    pub panels: Vec<SavedPanel>,
    pub config: serde_json::Value,
    /// errors.jsonl: the worst examples (input, prediction, reference, score).
    pub errors: Vec<serde_json::Value>,
}

/// A curve of one run: (label, points).
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

impl RunLog {
    pub fn read(dir: &Path) -> Result<RunLog> {
        let file = dir.join("metrics.jsonl");
        if !file.exists() {
            bail!("{} is not a run directory (it has no metrics.jsonl)", dir.display());
        }
        let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
        let mut train: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        let mut eval: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let row: serde_json::Value = serde_json::from_str(line).with_context(|| format!("{}:{}: not valid JSON", file.display(), i + 1))?;
            let into = match row.get("kind").and_then(|k| k.as_str()) {
                Some("step") => &mut train,
                Some("eval") => &mut eval,
                _ => continue,
            };
            let Some(step) = row.get("step").and_then(|s| s.as_f64()) else { continue };
            for (k, v) in row.as_object().into_iter().flatten() {
                if matches!(k.as_str(), "kind" | "step" | "time") {
                    continue;
                }
                if let Some(x) = v.as_f64().filter(|x| x.is_finite()) {
                    into.entry(k.clone()).or_default().push((step, x));
                }
            }
        }
        let panels = match std::fs::read_to_string(dir.join("panels.json")) {
            Ok(t) => serde_json::from_str::<Vec<SavedPanel>>(&t).with_context(|| format!("{}: not valid panels", dir.join("panels.json").display()))?,
            Err(_) => Vec::new(),
        };
        let config = std::fs::read_to_string(dir.join("config.json")).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
        let errors = std::fs::read_to_string(dir.join("errors.jsonl"))
            .map(|t| t.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
            .unwrap_or_default();
        let name = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| dir.display().to_string());
        Ok(RunLog { name, dir: dir.to_path_buf(), train, eval, panels, config, errors })
    }
}

/// Every metric of the runs (train or eval), each drawn once.
pub fn metric_names(runs: &[RunLog]) -> Vec<String> {
    let mut names: Vec<String> = runs.iter().flat_map(|r| r.train.keys().chain(r.eval.keys()).cloned()).collect();
    names.sort();
    names.dedup();
    names
}

/// The curves of `metric`: train and eval, of each run (named by run when there are several).
pub fn series_of(runs: &[RunLog], metric: &str) -> Vec<Series> {
    let mut out = Vec::new();
    for r in runs {
        let prefix = if runs.len() > 1 { format!("{} ", r.name) } else { String::new() };
        if let Some(p) = r.train.get(metric) {
            out.push(Series { label: format!("{prefix}train"), points: p.clone() });
        }
        if let Some(p) = r.eval.get(metric) {
            out.push(Series { label: format!("{prefix}eval"), points: p.clone() });
        }
    }
    out
}
