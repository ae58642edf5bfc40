//! What the TUI knows of a run, built from events alone: status, progress and rates, the history
//! of every metric (train and eval), reload markers, the log, model counts and panels, and the
//! view settings the keys change (metric, smoothing, range, help, REPL line, quit prompt).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::nn::module::ParamCounts;
use crate::run::event::{Busy, Event, Panel};
use crate::ui::progress::Rate;

const LOG_LINES: usize = 500;
/// Points shown in the "recent" view.
pub const RECENT: usize = 200;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Status {
    Starting,
    Running,
    Paused,
    Evaluating,
    Reloading,
    Error,
    Done,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Evaluating => "evaluating",
            Status::Reloading => "reloading",
            Status::Error => "error",
            Status::Done => "done",
        }
    }
}

/// What a keypress is waiting for, if anything.
#[derive(Clone, Debug, PartialEq)]
pub enum Prompt {
    None,
    /// Typing a REPL line after `:`.
    Repl(String),
    /// `q` was pressed: save before quitting?
    Quit,
}

pub struct TuiState {
    pub recipe: String,
    pub run_dir: String,
    pub device: String,
    pub status: Status,
    pub version: u32,
    pub reloads: u32,
    pub started: Instant,
    pub total: Option<u64>,
    pub step: u64,
    pub rate: Rate,
    pub tokens: f64,
    /// Step metrics by name: (step, value).
    pub train: BTreeMap<String, Vec<(u64, f64)>>,
    /// Eval metrics by name: (step, value).
    pub eval: BTreeMap<String, Vec<(u64, f64)>>,
    /// Steps at which a reload took effect.
    pub reload_marks: Vec<u64>,
    pub log: VecDeque<String>,
    pub panels: BTreeMap<String, Panel>,
    /// Parameter counts of `state.model`, overall and per owner.
    pub params: Option<ParamCounts>,
    /// The model's adapters as last reported.
    pub adapters: Vec<crate::peft::AdapterSummary>,
    /// Resident memory of this process, MiB (updated by the UI loop).
    pub rss_mib: Option<f64>,
    /// CUDA memory (allocated, reserved) per device in MiB, when there is CUDA.
    pub cuda_mib: Vec<(f64, f64)>,
    pub selected: usize,
    pub smooth: bool,
    pub recent: bool,
    pub help: bool,
    pub prompt: Prompt,
    pub finished: bool,
    /// The user asked to quit; the UI ends once the run has stopped.
    pub quitting: bool,
}

impl TuiState {
    pub fn new(device: String) -> TuiState {
        TuiState {
            recipe: String::new(),
            run_dir: String::new(),
            device,
            status: Status::Starting,
            version: 1,
            reloads: 0,
            started: Instant::now(),
            total: None,
            step: 0,
            rate: Rate::default(),
            tokens: 0.0,
            train: BTreeMap::new(),
            eval: BTreeMap::new(),
            reload_marks: Vec::new(),
            log: VecDeque::new(),
            panels: BTreeMap::new(),
            params: None,
            adapters: Vec::new(),
            rss_mib: None,
            cuda_mib: Vec::new(),
            selected: 0,
            smooth: false,
            recent: false,
            help: false,
            prompt: Prompt::None,
            finished: false,
            quitting: false,
        }
    }

    pub fn push_log(&mut self, text: &str) {
        for line in text.lines() {
            if self.log.len() == LOG_LINES {
                self.log.pop_front();
            }
            self.log.push_back(line.to_string());
        }
    }

    /// Applies one event (at time `now`).
    pub fn apply(&mut self, event: Event, now: Instant) {
        match event {
            Event::Started { recipe, run_dir, total_steps, .. } => {
                self.recipe = recipe;
                self.run_dir = run_dir.map(|d| d.display().to_string()).unwrap_or_default();
                self.total = total_steps;
                self.status = Status::Running;
                self.started = now;
            }
            Event::Settings { total_steps, .. } => self.total = total_steps,
            Event::Step { step, metrics, panels } => {
                self.step = step;
                self.rate.update(now, step);
                for (name, value) in metrics {
                    if name == "tokens" {
                        self.tokens += value;
                    }
                    self.train.entry(name).or_default().push((step, value));
                }
                self.panels.extend(panels.into_iter().map(|p| (p.name.clone(), p)));
                if self.status == Status::Evaluating || self.status == Status::Reloading || self.status == Status::Starting {
                    self.status = Status::Running;
                }
            }
            Event::Eval { step, metrics, panels } => {
                if self.status == Status::Evaluating {
                    self.status = Status::Running;
                }
                for (name, value) in metrics {
                    self.eval.entry(name).or_default().push((step, value));
                }
                self.panels.extend(panels.into_iter().map(|p| (p.name.clone(), p)));
            }
            Event::Model(counts) => self.params = Some(counts),
            Event::Adapters(adapters) => self.adapters = adapters,
            Event::Log(text) => self.push_log(&text),
            Event::Reload { step, version, error } => {
                match error {
                    None => {
                        self.reloads += 1;
                        self.reload_marks.push(step);
                        self.push_log(&format!("reloaded at step {step}: version {version}"));
                    }
                    Some(e) => self.push_log(&format!("reload failed at step {step}, running version {version}: {e}")),
                }
                self.version = version;
                if self.status == Status::Reloading {
                    self.status = Status::Running;
                }
            }
            Event::Paused(p) => self.status = if p { Status::Paused } else { Status::Running },
            Event::Busy(Busy::Evaluating) => self.status = Status::Evaluating,
            Event::Busy(Busy::Reloading) => self.status = Status::Reloading,
            Event::Finished { step, error, interrupted, .. } => {
                self.step = step;
                self.finished = true;
                self.status = if error.is_some() { Status::Error } else { Status::Done };
                if let Some(e) = error {
                    self.push_log(&format!("error: {e}"));
                }
                let how = if interrupted { "stopped" } else { "finished" };
                self.push_log(&format!("{how} after {step} steps — press q to leave"));
            }
        }
    }

    /// Every metric name, train and eval together, in order.
    pub fn metric_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.train.keys().chain(self.eval.keys()).cloned().collect();
        names.sort();
        names.dedup();
        if let Some(i) = names.iter().position(|n| n == "loss") {
            let loss = names.remove(i);
            names.insert(0, loss);
        }
        names
    }

    pub fn selected_metric(&self) -> Option<String> {
        let names = self.metric_names();
        (!names.is_empty()).then(|| names[self.selected % names.len()].clone())
    }

    pub fn elapsed(&self, now: Instant) -> Duration {
        now.duration_since(self.started)
    }

    pub fn tokens_per_second(&self, now: Instant) -> Option<f64> {
        let secs = self.elapsed(now).as_secs_f64();
        (self.tokens > 0.0 && secs > 0.0).then(|| self.tokens / secs)
    }
}

/// An exponential moving average of the values (the chart's smoothing), bias-corrected.
pub fn ema(points: &[(u64, f64)], alpha: f64) -> Vec<(u64, f64)> {
    let mut avg = 0.0;
    points
        .iter()
        .enumerate()
        .map(|(i, (s, v))| {
            avg = alpha * avg + (1.0 - alpha) * v;
            (*s, avg / (1.0 - alpha.powi(i as i32 + 1)))
        })
        .collect()
}
