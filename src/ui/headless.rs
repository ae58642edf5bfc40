//! Headless output: on a terminal, one live progress line (step/total, metrics, steps/s, ETA)
//! redrawn in place with log lines printed above it; otherwise plain lines, a step line every
//! `log_every` steps. Runs on its own thread and never blocks the run thread.

use std::io::{IsTerminal, Write};
use std::sync::mpsc::Receiver;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::progress::{clock, number, Rate};
use crate::run::event::{Event, Metrics};

/// How often the live line may be redrawn.
const REDRAW: Duration = Duration::from_millis(100);

struct Printer {
    live: bool,
    log_every: u64,
    total: Option<u64>,
    rate: Rate,
    last_draw: Option<Instant>,
    line_shown: bool,
    last_step: Option<(u64, Metrics)>,
}

fn metrics_text(metrics: &Metrics) -> String {
    // The loss first, then the rest by name.
    let mut ordered: Vec<&(String, f64)> = metrics.iter().filter(|(k, _)| k == "loss").collect();
    ordered.extend(metrics.iter().filter(|(k, _)| k != "loss"));
    ordered.iter().map(|(k, v)| format!("{k} {}", number(*v))).collect::<Vec<_>>().join(" | ")
}

impl Printer {
    fn step_text(&self, step: u64, metrics: &Metrics) -> String {
        let mut parts = vec![match self.total {
            Some(t) => format!("step {step}/{t}"),
            None => format!("step {step}"),
        }];
        if !metrics.is_empty() {
            parts.push(metrics_text(metrics));
        }
        if let Some(r) = self.rate.per_second() {
            parts.push(format!("{r:.1} steps/s"));
        }
        if let Some(eta) = self.total.and_then(|t| self.rate.eta(step, t)) {
            parts.push(format!("ETA {}", clock(eta)));
        }
        parts.join(" | ")
    }

    fn clear_line(&mut self, out: &mut impl Write) {
        if self.line_shown {
            let _ = write!(out, "\r\x1b[2K");
            self.line_shown = false;
        }
    }

    fn redraw(&mut self, out: &mut impl Write, force: bool) {
        let Some((step, metrics)) = &self.last_step else { return };
        let now = Instant::now();
        if !force && self.last_draw.is_some_and(|t| now.duration_since(t) < REDRAW) {
            return;
        }
        let text = self.step_text(*step, metrics);
        let _ = write!(out, "\r\x1b[2K{text}");
        let _ = out.flush();
        self.line_shown = true;
        self.last_draw = Some(now);
    }

    fn line(&mut self, out: &mut impl Write, text: &str) {
        self.clear_line(out);
        let _ = writeln!(out, "{text}");
        if self.live {
            self.redraw(out, true);
        }
        let _ = out.flush();
    }

    fn handle(&mut self, event: Event, out: &mut impl Write) -> bool {
        match event {
            Event::Started { recipe, run_dir, total_steps, log_every } => {
                self.total = total_steps;
                self.log_every = log_every.max(1);
                let dir = run_dir.map(|d| d.display().to_string()).unwrap_or_default();
                self.line(out, &format!("moontune: running {recipe} → {dir}"));
            }
            Event::Settings { total_steps, log_every } => {
                self.total = total_steps;
                self.log_every = log_every.max(1);
            }
            Event::Model { .. } | Event::Adapters(_) | Event::Busy(_) => {}
            Event::Step { step, metrics, .. } => {
                self.rate.update(Instant::now(), step);
                let text = self.step_text(step, &metrics);
                self.last_step = Some((step, metrics));
                if self.live {
                    self.redraw(out, false);
                } else if step == 1 || step % self.log_every == 0 || self.total == Some(step) {
                    self.line(out, &text);
                }
            }
            Event::Eval { step, metrics, .. } => self.line(out, &format!("eval @ step {step} | {}", metrics_text(&metrics))),
            Event::Log(text) => self.line(out, &text),
            Event::Reload { step, version, error: None } => self.line(out, &format!("reloaded the recipe at step {step}: version {version}")),
            Event::Reload { step, version, error: Some(e) } => self.line(out, &format!("reload at step {step} failed, running version {version}: {e}")),
            Event::Paused(true) => self.line(out, "paused"),
            Event::Paused(false) => self.line(out, "resumed"),
            Event::Finished { step, run_dir, error, interrupted } => {
                if self.live {
                    self.redraw(out, true);
                    let _ = writeln!(out);
                    self.line_shown = false;
                }
                if let Some(e) = error {
                    self.line(out, &format!("moontune: error: {e}"));
                }
                let how = if interrupted { "stopped" } else { "finished" };
                let dir = run_dir.map(|d| format!("; run directory: {}", d.display())).unwrap_or_default();
                if step > 0 || interrupted {
                    self.line(out, &format!("moontune: {how} after {step} steps{dir}"));
                }
                return false;
            }
        }
        true
    }
}

/// Starts the printer thread; it ends after the `Finished` event (or when the channel closes).
/// Its result has the TUI's type, so that either front end is joined alike.
pub fn spawn(events: Receiver<Event>) -> JoinHandle<anyhow::Result<()>> {
    std::thread::spawn(move || {
        let stdout = std::io::stdout();
        let live = stdout.is_terminal();
        let mut printer = Printer { live, log_every: 10, total: None, rate: Rate::default(), last_draw: None, line_shown: false, last_step: None };
        for event in events {
            let mut out = stdout.lock();
            if !printer.handle(event, &mut out) {
                break;
            }
        }
        Ok(())
    })
}
