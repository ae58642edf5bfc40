//! Drawing the TUI from a `TuiState` (burn's State/View split): header, progress gauge, a chart
//! of the selected metric (train and eval on one axis, EMA smoothing, reload markers), a table
//! of latest values, the log, the model panel with heat-map tables, resources and keys.

use std::time::Instant;

use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Borders, Cell, Chart, Clear, Dataset, Gauge, GraphType, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

use super::state::{ema, Prompt, Status, TuiState, RECENT};
use crate::run::event::Panel;
use crate::ui::progress::{clock, number};

fn status_style(s: Status) -> Style {
    let color = match s {
        Status::Running => Color::Green,
        Status::Paused => Color::Yellow,
        Status::Evaluating | Status::Reloading | Status::Starting => Color::Cyan,
        Status::Error => Color::Red,
        Status::Done => Color::Blue,
    };
    Style::default().fg(color).add_modifier(Modifier::BOLD)
}

fn count(n: i64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

pub fn draw(f: &mut Frame, s: &TuiState, now: Instant) {
    let area = f.area();
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([Constraint::Length(2), Constraint::Length(1), Constraint::Percentage(50), Constraint::Min(5), Constraint::Length(2)])
        .split(area);
    header(f, s, rows[0], now);
    gauge(f, s, rows[1], now);
    let middle = Layout::default().direction(Direction::Horizontal).constraints([Constraint::Min(30), Constraint::Length(30)]).split(rows[2]);
    chart(f, s, middle[0]);
    metrics_table(f, s, middle[1]);
    let bottom = Layout::default().direction(Direction::Horizontal).constraints([Constraint::Percentage(55), Constraint::Percentage(45)]).split(rows[3]);
    log(f, s, bottom[0]);
    model_panel(f, s, bottom[1]);
    footer(f, s, rows[4]);
    if s.help {
        help(f, area);
    }
}

fn header(f: &mut Frame, s: &TuiState, area: Rect, now: Instant) {
    let eta = match (s.total, s.rate.eta(s.step, s.total.unwrap_or(0))) {
        (Some(_), Some(e)) if !s.finished => format!(" · ETA {}", clock(e)),
        _ => String::new(),
    };
    let lines = vec![
        Line::from(vec![
            Span::styled("moontune ", Style::default().add_modifier(Modifier::BOLD)),
            Span::raw(format!("{} → {}", s.recipe, s.run_dir)),
        ]),
        Line::from(vec![
            Span::styled(s.status.label(), status_style(s.status)),
            Span::raw(format!(
                " · recipe v{} ({} reload{}) · {} · elapsed {}{eta}",
                s.version,
                s.reloads,
                if s.reloads == 1 { "" } else { "s" },
                s.device,
                clock(s.elapsed(now))
            )),
        ]),
    ];
    f.render_widget(Paragraph::new(lines), area);
}

fn gauge(f: &mut Frame, s: &TuiState, area: Rect, now: Instant) {
    let ratio = match s.total {
        Some(t) if t > 0 => (s.step as f64 / t as f64).clamp(0.0, 1.0),
        _ => 0.0,
    };
    let mut label = match s.total {
        Some(t) => format!("step {}/{t}", s.step),
        None => format!("step {}", s.step),
    };
    if let Some(r) = s.rate.per_second() {
        label.push_str(&format!(" · {r:.1} steps/s"));
    }
    if let Some(t) = s.tokens_per_second(now) {
        label.push_str(&format!(" · {} tokens/s", number(t.round())));
    }
    f.render_widget(Gauge::default().gauge_style(Style::default().fg(Color::Green)).ratio(ratio).label(label), area);
}

fn window(points: &[(u64, f64)], recent: bool) -> &[(u64, f64)] {
    if recent && points.len() > RECENT {
        &points[points.len() - RECENT..]
    } else {
        points
    }
}

fn chart(f: &mut Frame, s: &TuiState, area: Rect) {
    let Some(name) = s.selected_metric() else {
        f.render_widget(Paragraph::new("waiting for the first step…").block(Block::default().borders(Borders::ALL).title(" chart ")), area);
        return;
    };
    let to_xy = |p: &[(u64, f64)]| -> Vec<(f64, f64)> { p.iter().map(|(x, y)| (*x as f64, *y)).collect() };
    let shape = |p: &[(u64, f64)]| -> Vec<(f64, f64)> {
        let p = window(p, s.recent);
        if s.smooth { to_xy(&ema(p, 0.9)) } else { to_xy(p) }
    };
    let train = s.train.get(&name).map(|p| shape(p)).unwrap_or_default();
    let eval = s.eval.get(&name).map(|p| to_xy(window(p, s.recent))).unwrap_or_default();
    let all: Vec<&(f64, f64)> = train.iter().chain(eval.iter()).collect();
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in all.iter().map(|p| (p.0, p.1)).filter(|(_, y)| y.is_finite()) {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 - x0 < 1.0 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-9);
    let (y0, y1) = (y0 - pad, y1 + pad);
    let marks: Vec<(f64, f64)> = s
        .reload_marks
        .iter()
        .filter(|m| (**m as f64) >= x0 && (**m as f64) <= x1)
        .flat_map(|m| (0..=8).map(move |i| (*m as f64, y0 + (y1 - y0) * i as f64 / 8.0)))
        .collect();
    let mut datasets = vec![Dataset::default().name("train").marker(Marker::Braille).graph_type(GraphType::Line).style(Style::default().fg(Color::Cyan)).data(&train)];
    if !eval.is_empty() {
        datasets.push(Dataset::default().name("eval").marker(Marker::Dot).graph_type(GraphType::Line).style(Style::default().fg(Color::Magenta)).data(&eval));
    }
    if !marks.is_empty() {
        datasets.push(Dataset::default().name("reload").marker(Marker::Dot).graph_type(GraphType::Scatter).style(Style::default().fg(Color::Yellow)).data(&marks));
    }
    let title = format!(" {name} (←/→){}{} ", if s.smooth { " · EMA" } else { "" }, if s.recent { " · recent" } else { " · all" });
    let chart = Chart::new(datasets)
        .block(Block::default().borders(Borders::ALL).title(title))
        .x_axis(Axis::default().bounds([x0, x1]).labels(vec![Span::raw(format!("{x0:.0}")), Span::raw(format!("{x1:.0}"))]))
        .y_axis(Axis::default().bounds([y0, y1]).labels(vec![Span::raw(number(y0)), Span::raw(number(y1))]));
    f.render_widget(chart, area);
}

fn metrics_table(f: &mut Frame, s: &TuiState, area: Rect) {
    let selected = s.selected_metric();
    let rows: Vec<Row> = s
        .metric_names()
        .into_iter()
        .map(|name| {
            let last = |m: &std::collections::BTreeMap<String, Vec<(u64, f64)>>| m.get(&name).and_then(|v| v.last()).map(|(_, v)| number(*v)).unwrap_or_default();
            let style = if Some(&name) == selected.as_ref() { Style::default().add_modifier(Modifier::REVERSED) } else { Style::default() };
            Row::new(vec![Cell::from(name.clone()), Cell::from(last(&s.train)), Cell::from(last(&s.eval))]).style(style)
        })
        .collect();
    let table = Table::new(rows, [Constraint::Min(10), Constraint::Length(8), Constraint::Length(8)])
        .header(Row::new(vec!["metric", "train", "eval"]).style(Style::default().add_modifier(Modifier::BOLD)))
        .block(Block::default().borders(Borders::ALL).title(" latest "));
    f.render_widget(table, area);
}

/// Log lines broken to the pane's width, the last `height` of them.
fn log(f: &mut Frame, s: &TuiState, area: Rect) {
    let height = area.height.saturating_sub(2) as usize;
    let width = area.width.saturating_sub(2).max(1) as usize;
    let mut visual: Vec<Line> = Vec::new();
    for l in s.log.iter().skip(s.log.len().saturating_sub(height)) {
        let style = if l.starts_with("error") || l.contains("failed") { Style::default().fg(Color::Red) } else { Style::default() };
        let chars: Vec<char> = l.chars().collect();
        for chunk in chars.chunks(width) {
            visual.push(Line::styled(chunk.iter().collect::<String>(), style));
        }
        if chars.is_empty() {
            visual.push(Line::from(""));
        }
    }
    let lines: Vec<Line> = visual.split_off(visual.len().saturating_sub(height));
    f.render_widget(Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" log ")), area);
}

/// Cell colour for a value between `lo` and `hi`: blue (low) to red (high).
fn heat(v: f64, lo: f64, hi: f64) -> Color {
    let t = if hi > lo { ((v - lo) / (hi - lo)).clamp(0.0, 1.0) } else { 0.5 };
    Color::Rgb((40.0 + 200.0 * t) as u8, 60, (240.0 - 200.0 * t) as u8)
}

fn heat_table(p: &Panel) -> Table<'_> {
    let (lo, hi) = p.values.iter().flatten().fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    let rows: Vec<Row> = p
        .values
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let mut cells = vec![Cell::from(p.rows.get(i).cloned().unwrap_or_default())];
            cells.extend(row.iter().map(|v| Cell::from(number(*v)).style(Style::default().bg(heat(*v, lo, hi)).fg(Color::White))));
            Row::new(cells)
        })
        .collect();
    let mut widths = vec![Constraint::Length(p.rows.iter().map(String::len).max().unwrap_or(1).min(12) as u16)];
    widths.extend(p.cols.iter().map(|_| Constraint::Length(7)));
    let mut header = vec![Cell::from("")];
    header.extend(p.cols.iter().map(|c| Cell::from(c.clone())));
    Table::new(rows, widths).header(Row::new(header).style(Style::default().add_modifier(Modifier::BOLD)))
}

fn model_panel(f: &mut Frame, s: &TuiState, area: Rect) {
    let block = Block::default().borders(Borders::ALL).title(" model ");
    let inner = block.inner(area);
    f.render_widget(block, area);
    let mut lines = match &s.params {
        Some(p) => vec![format!("parameters {} · trainable {}", count(p.total), count(p.trainable))],
        None => vec!["no state.model reported".to_string()],
    };
    // Adapters, when there are any: method, state, size and norms (at the last step); owners
    // that are not adapters of a loaded model (a Lua module's) by their share of the parameters.
    if !s.adapters.is_empty() {
        lines.extend(s.adapters.iter().map(adapter_line));
    } else if let Some(p) = s.params.as_ref().filter(|p| p.by_owner.len() > 1) {
        lines.extend(p.by_owner.iter().map(|(owner, total, trainable)| format!("  {owner}: {} · trainable {}", count(*total), count(*trainable))));
    }
    let parts = Layout::default().direction(Direction::Vertical).constraints([Constraint::Length(lines.len() as u16), Constraint::Min(0)]).split(inner);
    f.render_widget(Paragraph::new(lines.join("\n")), parts[0]);
    let panels: Vec<&Panel> = s.panels.values().collect();
    if panels.is_empty() {
        return;
    }
    let each = Layout::default().direction(Direction::Vertical).constraints(panels.iter().map(|p| Constraint::Length(p.values.len() as u16 + 2))).split(parts[1]);
    for (p, area) in panels.iter().zip(each.iter()) {
        let title = Paragraph::new(Line::styled(p.name.clone(), Style::default().add_modifier(Modifier::UNDERLINED)));
        let split = Layout::default().direction(Direction::Vertical).constraints([Constraint::Length(1), Constraint::Min(0)]).split(*area);
        f.render_widget(title, split[0]);
        f.render_widget(heat_table(p), split[1]);
    }
}

/// ` a LoRA on 4.5K ‖θ‖ 3.67 ‖∇‖ 0.012`: name, method, active or off, trainable parameters,
/// parameter norm and gradient norm at the last step.
fn adapter_line(a: &crate::peft::AdapterSummary) -> String {
    let state = if a.active { "on" } else { "off" };
    let grad = a.grad_norm.map(|g| format!(" ‖∇‖ {g:.3}")).unwrap_or_default();
    format!(" {} {} {state} {} ‖θ‖ {:.2}{grad}", a.name, a.method, count(a.trainable), a.norm)
}

fn footer(f: &mut Frame, s: &TuiState, area: Rect) {
    let mut resources = match s.rss_mib {
        Some(r) => format!("RSS {r:.0} MiB"),
        None => "RSS n/a".to_string(),
    };
    if s.cuda_mib.is_empty() {
        resources.push_str(" · CUDA: none");
    }
    for (i, (alloc, reserved)) in s.cuda_mib.iter().enumerate() {
        resources.push_str(&format!(" · cuda:{i} {alloc:.0}/{reserved:.0} MiB"));
    }
    let keys = match &s.prompt {
        Prompt::None => Line::from("p pause s save e eval r reload : repl ←→ metric m ema v range ? help q quit"),
        Prompt::Repl(text) => Line::from(vec![Span::styled(":", Style::default().fg(Color::Yellow)), Span::raw(text.clone()), Span::styled("█", Style::default().fg(Color::Yellow))]),
        Prompt::Quit => Line::styled("save a checkpoint before quitting? y = save and quit · n = quit · esc = stay", Style::default().fg(Color::Yellow)),
    };
    f.render_widget(Paragraph::new(vec![Line::from(resources), keys]).wrap(Wrap { trim: true }), area);
}

fn help(f: &mut Frame, area: Rect) {
    let text = vec![
        Line::from("p      pause / resume"),
        Line::from("s      save a checkpoint (the recipe's save)"),
        Line::from("e      evaluate now"),
        Line::from("r      reload the recipe now"),
        Line::from(":      a line of Lua in the run (state, cfg)"),
        Line::from("← →    previous / next metric"),
        Line::from("m      smoothing (EMA) on / off"),
        Line::from("v      all steps / recent steps"),
        Line::from("?      this help"),
        Line::from("q      quit (asks whether to save)"),
    ];
    let w = 52.min(area.width);
    let h = (text.len() as u16 + 2).min(area.height);
    let popup = Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h };
    f.render_widget(Clear, popup);
    f.render_widget(Paragraph::new(text).block(Block::default().borders(Borders::ALL).title(" keys ")), popup);
}
