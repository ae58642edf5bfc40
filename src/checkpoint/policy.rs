//! Which checkpoints a run keeps and when it stops early: `keep_last = N` keeps the newest N,
//! `keep_best = "metric:min|max"` also keeps the one whose latest evaluation was best,
//! `patience = K` stops after K evaluations without improvement of that metric, and
//! `restore_best` loads the best checkpoint before `finish`. The tracker is saved in each
//! checkpoint, so a resumed run judges as the uninterrupted one would.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq)]
pub struct Best {
    pub metric: String,
    pub maximize: bool,
}

impl Best {
    /// `"eval_loss:min"`, `"acc:max"`; without a direction, losses and perplexities are
    /// minimised and everything else maximised.
    pub fn parse(spec: &str) -> Result<Best> {
        let (metric, direction) = match spec.rsplit_once(':') {
            Some((m, d)) => (m, Some(d)),
            None => (spec, None),
        };
        if metric.is_empty() {
            bail!("keep_best must name a metric, e.g. \"eval_loss:min\" or \"acc:max\"; got \"{spec}\"");
        }
        let maximize = match direction {
            Some("max") => true,
            Some("min") => false,
            Some(other) => bail!("keep_best's direction must be min or max, got \"{other}\" in \"{spec}\""),
            None => !(metric.contains("loss") || metric.contains("perplexity") || metric.contains("ppl")),
        };
        Ok(Best { metric: metric.to_string(), maximize })
    }

    fn better(&self, a: f64, than: f64) -> bool {
        if self.maximize {
            a > than
        } else {
            a < than
        }
    }

    /// The metric's value among an evaluation's metrics (`eval_x` also finds `x`).
    pub fn value(&self, metrics: &[(String, f64)]) -> Option<f64> {
        let find = |name: &str| metrics.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
        find(&self.metric).or_else(|| self.metric.strip_prefix("eval_").and_then(find)).filter(|v| v.is_finite())
    }
}

#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub keep_last: Option<usize>,
    pub best: Option<Best>,
    pub patience: Option<u32>,
    pub restore_best: bool,
}

/// What the run has seen of the metric so far.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Tracker {
    pub best_value: Option<f64>,
    pub evals_without_improvement: u32,
    /// The metric at the latest evaluation.
    pub last_value: Option<f64>,
    /// Each checkpoint's step with the metric of the evaluation before it.
    pub scores: Vec<(u64, f64)>,
}

impl Tracker {
    pub fn on_eval(&mut self, best: &Best, metrics: &[(String, f64)]) {
        let Some(v) = best.value(metrics) else { return };
        self.last_value = Some(v);
        match self.best_value {
            Some(b) if !best.better(v, b) => self.evals_without_improvement += 1,
            _ => {
                self.best_value = Some(v);
                self.evals_without_improvement = 0;
            }
        }
    }

    pub fn on_checkpoint(&mut self, step: u64) {
        self.scores.retain(|(s, _)| *s != step);
        if let Some(v) = self.last_value {
            self.scores.push((step, v));
        }
    }

    /// The checkpoint whose evaluation was best (the earliest of equals).
    pub fn best_checkpoint(&self, best: &Best, existing: &[u64]) -> Option<u64> {
        let mut out: Option<(u64, f64)> = None;
        for &(step, v) in self.scores.iter().filter(|(s, _)| existing.contains(s)) {
            if out.is_none_or(|(_, b)| best.better(v, b)) {
                out = Some((step, v));
            }
        }
        out.map(|(s, _)| s)
    }

    /// The checkpoints to keep of `existing` (ascending steps).
    pub fn keep(&self, policy: &Policy, existing: &[u64]) -> Vec<u64> {
        let mut keep: Vec<u64> = match policy.keep_last {
            Some(n) => existing.iter().rev().take(n).copied().collect(),
            None => existing.to_vec(),
        };
        if let Some(best) = &policy.best {
            keep.extend(self.best_checkpoint(best, existing));
        }
        keep
    }

    pub fn should_stop(&self, policy: &Policy) -> bool {
        policy.patience.is_some_and(|p| self.evals_without_improvement >= p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_and_the_best_and_counts_patience() {
        let best = Best::parse("eval_loss").unwrap();
        assert!(!best.maximize);
        assert!(Best::parse("acc:max").unwrap().maximize);
        assert!(Best::parse("acc:up").is_err());
        let policy = Policy { keep_last: Some(1), best: Some(best.clone()), patience: Some(2), restore_best: false };
        let mut t = Tracker::default();
        for (step, loss) in [(10, 2.0), (20, 1.5), (30, 1.7), (40, 1.6)] {
            t.on_eval(&best, &[("loss".into(), loss)]);
            t.on_checkpoint(step);
        }
        assert_eq!(t.best_checkpoint(&best, &[10, 20, 30, 40]), Some(20));
        assert_eq!(t.keep(&policy, &[10, 20, 30, 40]), vec![40, 20]);
        assert!(t.should_stop(&policy));
    }
}
