//! Rates and remaining time from step timings, and number formatting for progress displays.

use std::time::{Duration, Instant};

/// Tracks steps per second as an exponential moving average.
pub struct Rate {
    last: Option<(Instant, u64)>,
    per_second: Option<f64>,
}

impl Default for Rate {
    fn default() -> Self {
        Rate { last: None, per_second: None }
    }
}

impl Rate {
    pub fn update(&mut self, now: Instant, step: u64) {
        if let Some((t, s)) = self.last {
            let dt = now.duration_since(t).as_secs_f64();
            if dt > 0.0 && step > s {
                let r = (step - s) as f64 / dt;
                self.per_second = Some(match self.per_second {
                    None => r,
                    Some(old) => 0.8 * old + 0.2 * r,
                });
            }
        }
        self.last = Some((now, step));
    }

    pub fn per_second(&self) -> Option<f64> {
        self.per_second
    }

    /// Time left to reach `total` from `step` at the current rate.
    pub fn eta(&self, step: u64, total: u64) -> Option<Duration> {
        let r = self.per_second?;
        (r > 0.0 && total >= step).then(|| Duration::from_secs_f64((total - step) as f64 / r))
    }
}

/// `h:mm:ss` or `m:ss`.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// A metric value in at most ~8 characters: `2.3141`, `2.0e-04`, `12345`.
pub fn number(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if !v.is_finite() {
        v.to_string()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_estimates() {
        assert_eq!(number(2.31414), "2.3141");
        assert_eq!(number(0.0002), "2.0e-4");
        assert_eq!(number(120.0), "120");
        assert_eq!(clock(Duration::from_secs(3725)), "1:02:05");
        assert_eq!(clock(Duration::from_secs(65)), "1:05");
        let mut r = Rate::default();
        let t0 = Instant::now();
        r.update(t0, 0);
        r.update(t0 + Duration::from_secs(2), 10);
        assert_eq!(r.per_second(), Some(5.0));
        assert_eq!(r.eta(10, 20), Some(Duration::from_secs(2)));
    }
}
