//! `moontune report RUN_DIR [RUN_DIR ...] [--out DIR]`: writes report.html and its pictures for
//! one run (into its directory) or several overlaid (into --out, default
//! `runs/compare-<time>`).

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::output;
use crate::report;

pub fn report(runs: &[PathBuf], out: Option<&Path>) -> Result<()> {
    let out = match (out, runs) {
        (Some(o), _) => o.to_path_buf(),
        (None, [one]) => one.clone(),
        (None, _) => PathBuf::from("runs").join(format!("compare-{}", chrono::Local::now().format("%Y%m%d-%H%M%S"))),
    };
    let written = report::write(runs, &out)?;
    output::line(format!("{} ({} images)", written.html.display(), written.images.len()))
}
