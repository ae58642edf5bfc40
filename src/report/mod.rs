//! Reports of runs: `report.html` with a picture of every metric (train and eval curves, one run
//! or several overlaid), the heat maps of the panels a recipe reported (confusion matrices), a
//! before/after table of the evaluations and the error-analysis file, written beside the images
//! (SVG and PNG) in `report/`. Written at the end of every run and by `moontune report`.

pub mod chart;
pub mod html;
pub mod runlog;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use runlog::RunLog;

/// What a written report holds.
pub struct Written {
    pub html: PathBuf,
    pub images: Vec<PathBuf>,
}

/// A file-name-safe form of a metric or panel name.
fn slug(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// Writes `out/report.html` and `out/report/*.{svg,png}` for the runs in `run_dirs`.
pub fn write(run_dirs: &[PathBuf], out: &Path) -> Result<Written> {
    if run_dirs.is_empty() {
        bail!("give at least one run directory");
    }
    let runs: Vec<RunLog> = run_dirs.iter().map(|d| RunLog::read(d)).collect::<Result<_>>()?;
    let images_dir = out.join("report");
    std::fs::create_dir_all(&images_dir).with_context(|| format!("cannot create {}", images_dir.display()))?;
    chart::init_font()?;
    let mut figures = Vec::new();
    for metric in runlog::metric_names(&runs) {
        let series = runlog::series_of(&runs, &metric);
        let stem = images_dir.join(format!("metric-{}", slug(&metric)));
        chart::lines(&metric, &series, &stem)?;
        figures.push(html::Figure { title: metric.clone(), stem: format!("report/metric-{}", slug(&metric)) });
    }
    for run in &runs {
        for panel in &run.panels {
            let name = if runs.len() > 1 { format!("{} — {}", run.name, panel.name) } else { panel.name.clone() };
            let stem_name = format!("panel-{}-{}", slug(&run.name), slug(&panel.name));
            chart::heatmap(&name, panel, &images_dir.join(&stem_name))?;
            figures.push(html::Figure { title: format!("{name} (step {})", panel.step), stem: format!("report/{stem_name}") });
        }
    }
    let page = html::page(&runs, &figures);
    let html_path = out.join("report.html");
    crate::io::write_atomic(&html_path, page.as_bytes())?;
    let images = figures.iter().flat_map(|f| ["svg", "png"].map(|ext| out.join(format!("{}.{ext}", f.stem)))).collect();
    Ok(Written { html: html_path, images })
}
