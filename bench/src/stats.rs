//! Percentiles and the figures a scenario reports.

use std::time::Duration;

use serde::Serialize;

/// A distribution of durations, in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Percentiles {
    /// How many values.
    pub samples: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile (nearest rank).
    pub p99_ms: f64,
    /// Largest value.
    pub max_ms: f64,
}

impl Percentiles {
    /// The percentiles of `values` (sorted here); all zero when there are none.
    pub fn of(mut values: Vec<Duration>) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort_unstable();
        let rank = |p: f64| {
            // Nearest rank: the smallest value with at least p % of values at or below it.
            let n = values.len() as f64;
            let index = (p / 100.0 * n).ceil() as usize;
            values[index.clamp(1, values.len()) - 1]
        };
        Self {
            samples: values.len(),
            p50_ms: millis(rank(50.0)),
            p99_ms: millis(rank(99.0)),
            max_ms: millis(values[values.len() - 1]),
        }
    }
}

/// Milliseconds, rounded to microseconds.
pub fn millis(duration: Duration) -> f64 {
    round3(duration.as_secs_f64() * 1000.0)
}

/// Rounded to three decimals, for figures that are read by people.
pub fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// `ours / theirs`, or `None` when `theirs` is zero.
pub fn ratio(ours: f64, theirs: f64) -> Option<f64> {
    (theirs > 0.0).then(|| round3(ours / theirs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values = (1..=100).map(Duration::from_millis).collect();
        let p = Percentiles::of(values);
        assert_eq!(p.samples, 100);
        assert_eq!(p.p50_ms, 50.0);
        assert_eq!(p.p99_ms, 99.0);
        assert_eq!(p.max_ms, 100.0);
        let one = Percentiles::of(vec![Duration::from_micros(1500)]);
        assert_eq!((one.p50_ms, one.p99_ms, one.max_ms), (1.5, 1.5, 1.5));
        assert_eq!(Percentiles::of(Vec::new()).samples, 0);
    }

    #[test]
    fn ratios_of_nothing_are_none() {
        assert_eq!(ratio(3.0, 2.0), Some(1.5));
        assert_eq!(ratio(3.0, 0.0), None);
    }
}
