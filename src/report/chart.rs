//! Pictures drawn with plotters, each as SVG and PNG: line charts of a metric (several series,
//! with a legend) and heat maps of panels (a confusion matrix with its labels and counts). Text is
//! set in DejaVu Sans, embedded, so that pictures look the same on every machine.

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::runlog::{SavedPanel, Series};

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const SIZE: (u32, u32) = (720, 420);
const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Registers the embedded font as plotters' sans-serif (once per process).
pub fn init_font() -> Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).map_err(|_| anyhow!("the embedded font does not load"));
    });
    result
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e:?}")
}

/// The range of `values` with a margin, never empty.
fn span(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        let pad = if lo.abs() > 1e-12 { lo.abs() * 0.05 } else { 1.0 };
        return (lo - pad, hi + pad);
    }
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}

fn draw_lines<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, title: &str, series: &[Series]) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    let (x0, x1) = span(series.iter().flat_map(|s| s.points.iter().map(|p| p.0)));
    let (y0, y1) = span(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    chart.configure_mesh().x_desc("step").label_style(("sans-serif", 13)).axis_desc_style(("sans-serif", 14)).draw().map_err(err)?;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let style = ShapeStyle::from(&color).stroke_width(2);
        if s.points.len() == 1 {
            chart.draw_series(s.points.iter().map(|p| Circle::new(*p, 4, style.filled()))).map_err(err)?.label(&s.label).legend(move |(x, y)| Circle::new((x + 10, y), 4, style.filled()));
        } else {
            chart.draw_series(LineSeries::new(s.points.iter().copied(), style)).map_err(err)?.label(&s.label).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// `stem.svg` and `stem.png`: the curves of one metric.
pub fn lines(title: &str, series: &[Series], stem: &Path) -> Result<()> {
    let svg = stem.with_extension("svg");
    draw_lines(&SVGBackend::new(&svg, SIZE).into_drawing_area(), title, series)?;
    let png = stem.with_extension("png");
    let area = BitMapBackend::new(&png, SIZE).into_drawing_area();
    draw_lines(&area, title, series)
}

/// A light-to-dark blue for `v` in [0, 1].
fn shade(v: f64) -> RGBColor {
    let v = v.clamp(0.0, 1.0);
    let mix = |a: f64, b: f64| (a + (b - a) * v).round() as u8;
    RGBColor(mix(247.0, 8.0), mix(251.0, 48.0), mix(255.0, 107.0))
}

fn draw_heatmap<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, title: &str, panel: &SavedPanel) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    let rows = panel.values.len().max(1);
    let cols = panel.values.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let (lo, hi) = span(panel.values.iter().flatten().copied());
    let label_width = panel.rows.iter().map(|r| r.chars().count()).max().unwrap_or(4).clamp(4, 24) as u32 * 8 + 16;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(label_width)
        .build_cartesian_2d((0..cols as i32 - 1).into_segmented(), (0..rows as i32 - 1).into_segmented())
        .map_err(err)?;
    let name_at = |names: &[String], v: &SegmentValue<i32>, flip: bool| -> String {
        match v {
            SegmentValue::CenterOf(i) => {
                let i = if flip { rows as i32 - 1 - i } else { *i };
                names.get(i.max(0) as usize).cloned().unwrap_or_default()
            }
            _ => String::new(),
        }
    };
    let (col_names, row_names) = (panel.cols.clone(), panel.rows.clone());
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(cols + 1)
        .y_labels(rows + 1)
        .x_label_formatter(&|v| name_at(&col_names, v, false))
        .y_label_formatter(&|v| name_at(&row_names, v, true))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    for (r, row) in panel.values.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            let (x, y) = (c as i32, (rows - 1 - r) as i32);
            let t = (v - lo) / (hi - lo);
            let cell = [(SegmentValue::Exact(x), SegmentValue::Exact(y)), (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1))];
            chart.draw_series(std::iter::once(Rectangle::new(cell, shade(t).filled()))).map_err(err)?;
            let text = if v.fract() == 0.0 && v.abs() < 1e9 { format!("{v:.0}") } else { format!("{v:.3}") };
            let color = if t > 0.55 { WHITE } else { BLACK };
            let style = ("sans-serif", 16).into_font().color(&color).pos(Pos::new(HPos::Center, VPos::Center));
            chart.draw_series(std::iter::once(Text::new(text, (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y)), style))).map_err(err)?;
        }
    }
    root.present().map_err(err)
}

/// `stem.svg` and `stem.png`: a panel as a heat map with its values written in.
pub fn heatmap(title: &str, panel: &SavedPanel, stem: &Path) -> Result<()> {
    let svg = stem.with_extension("svg");
    draw_heatmap(&SVGBackend::new(&svg, SIZE).into_drawing_area(), title, panel)?;
    let png = stem.with_extension("png");
    let area = BitMapBackend::new(&png, SIZE).into_drawing_area();
    draw_heatmap(&area, title, panel)
}
