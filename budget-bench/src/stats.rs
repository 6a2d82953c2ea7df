//! Latency percentiles and the figures a bench run reports.

use std::time::Duration;

use serde::Serialize;

/// Every latency of one phase, in the order they were taken.
#[derive(Debug, Default, Clone)]
pub struct Latencies(Vec<Duration>);

impl Latencies {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    pub fn extend(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// p50, p95 and p99 in milliseconds (nearest rank); `None` without samples.
    pub fn percentiles(&self) -> Option<Percentiles> {
        if self.0.is_empty() {
            return None;
        }
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        let at = |p: f64| {
            let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
            sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
        };
        Some(Percentiles { p50_ms: at(50.0), p95_ms: at(95.0), p99_ms: at(99.0) })
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

/// One measured figure: a rate (or a single value), its latencies, and how it compares.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// Stable machine name (`usage_single`, `ceiling_one_row_insert`, …).
    pub name: &'static str,
    /// What was measured, for people.
    pub label: String,
    pub value: f64,
    /// `records/s`, `events/s`, `ms`, `MB`.
    pub unit: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<Percentiles>,
    /// The figure this one is compared with (a ceiling measured in the same run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// The target, said in words (`≥ 1.0× the one-row-insert ceiling, p99 ≤ 20 ms`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub met: Option<bool>,
}

impl Figure {
    pub fn new(name: &'static str, label: impl Into<String>, value: f64, unit: &'static str) -> Figure {
        Figure {
            name,
            label: label.into(),
            value,
            unit,
            latency: None,
            baseline: None,
            ratio: None,
            target: None,
            met: None,
        }
    }

    pub fn latency(mut self, l: &Latencies) -> Figure {
        self.latency = l.percentiles();
        self
    }

    /// Compares with a baseline figure of the same run.
    pub fn against(mut self, baseline: &Figure) -> Figure {
        self.baseline = Some(baseline.name);
        self.ratio = (baseline.value > 0.0).then(|| self.value / baseline.value);
        self
    }

    pub fn target(mut self, target: &'static str, met: bool) -> Figure {
        self.target = Some(target);
        self.met = Some(met);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let mut l = Latencies::default();
        for ms in 1..=100 {
            l.push(Duration::from_millis(ms));
        }
        let p = l.percentiles().unwrap();
        assert_eq!((p.p50_ms, p.p95_ms, p.p99_ms), (50.0, 95.0, 99.0));
        assert!(Latencies::default().percentiles().is_none());
    }
}
