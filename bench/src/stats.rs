//! Numbers: latency percentiles of one run, and the median of several runs
//! with how far apart the runs were.
//!
//! One run keeps every latency sample (a few hundred thousand `u64`s at
//! most) and sorts them: exact percentiles, no histogram error to explain.
//! Across runs we report the median of each figure and its spread, the
//! range `(max - min) / median`, so a reader sees at a glance whether a
//! ratio between two targets is larger than the noise.

use serde::Serialize;
use std::time::Duration;

/// Latency percentiles of one run, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Latency {
    /// Percentiles of `samples` (nanoseconds); sorts them in place.
    pub fn from_nanos(samples: &mut [u64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let us = |ns: u64| ns as f64 / 1000.0;
        Self {
            p50_us: us(percentile(samples, 50.0)),
            p99_us: us(percentile(samples, 99.0)),
            p999_us: us(percentile(samples, 99.9)),
            max_us: us(*samples.last().unwrap_or(&0)),
        }
    }
}

/// The nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    // The epsilon keeps 99.9% of 1000 at rank 999 despite rounding.
    let rank = (p * sorted.len() as f64 / 100.0 - 1e-9).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Percentiles of durations, in microseconds (for small sample sets such as
/// rotations or sets).
pub fn latency_of(durations: &[Duration]) -> Latency {
    let mut ns: Vec<u64> = durations.iter().map(|d| d.as_nanos() as u64).collect();
    Latency::from_nanos(&mut ns)
}

/// One figure measured over several runs.
#[derive(Debug, Clone, Serialize)]
pub struct Measure {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

impl Measure {
    /// The median, min and max of `values` (at least one).
    pub fn of(values: &[f64]) -> Self {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return Self {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
                runs: 0,
            };
        }
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Self {
            median,
            min: v[0],
            max: v[n - 1],
            runs: n,
        }
    }

    /// A single observation.
    pub fn one(value: f64) -> Self {
        Self::of(&[value])
    }

    /// `(max - min) / median`, as a percentage; 0 for a single run.
    pub fn spread_pct(&self) -> f64 {
        if self.runs < 2 || self.median == 0.0 || !self.median.is_finite() {
            0.0
        } else {
            (self.max - self.min) / self.median.abs() * 100.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s: Vec<u64> = (1..=1000).collect();
        let l = Latency::from_nanos(&mut s);
        assert_eq!(l.p50_us, 0.5);
        assert_eq!(l.p99_us, 0.99);
        assert_eq!(l.p999_us, 0.999);
        assert_eq!(l.max_us, 1.0);
        assert_eq!(percentile(&[7], 99.9), 7);
    }

    #[test]
    fn median_and_spread() {
        let m = Measure::of(&[10.0, 30.0, 20.0]);
        assert_eq!((m.median, m.min, m.max, m.runs), (20.0, 10.0, 30.0, 3));
        assert_eq!(m.spread_pct(), 100.0);
        assert_eq!(Measure::of(&[1.0, 3.0]).median, 2.0);
        assert_eq!(Measure::one(5.0).spread_pct(), 0.0);
    }
}
