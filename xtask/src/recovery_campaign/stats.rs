//! The campaign's statistics (recovery.md 5.6): rates with 95 % Wilson score intervals, which
//! stay inside [0, 1] and honest near 100 % where the normal approximation does not
//! (latency percentiles are `crate::inject::Percentiles`).

/// z for a two-sided 95 % interval.
const Z95: f64 = 1.959_964;

/// `k / n`, or none without trials.
pub fn rate(k: u64, n: u64) -> Option<f64> {
    (n > 0).then(|| k as f64 / n as f64)
}

/// The 95 % Wilson score interval of `k` successes in `n` trials; none without trials.
pub fn wilson(k: u64, n: u64) -> Option<[f64; 2]> {
    let p = rate(k, n)?;
    let n = n as f64;
    let z2 = Z95 * Z95;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z95 / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Some([(centre - half).max(0.0), (centre + half).min(1.0)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inject::Percentiles;

    fn close(a: [f64; 2], b: [f64; 2]) -> bool {
        (a[0] - b[0]).abs() < 6e-5 && (a[1] - b[1]).abs() < 6e-5
    }

    #[test]
    fn wilson_matches_known_intervals() {
        // Known values to four places, hence the tolerance.
        assert!(close(wilson(95, 100).unwrap(), [0.8882, 0.9785]));
        assert!(close(wilson(50, 100).unwrap(), [0.4038, 0.5962]));
        assert!(close(wilson(0, 10).unwrap(), [0.0, 0.2775]));
        assert!(close(wilson(10, 10).unwrap(), [0.7225, 1.0]));
        assert!(close(wilson(1, 1).unwrap(), [0.2065, 1.0]));
        assert_eq!(wilson(0, 0), None);
        assert_eq!(rate(3, 4), Some(0.75));
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let s = Percentiles::of((1..=100).rev().collect());
        assert_eq!((s.p50, s.p99, s.max), (50, 99, 100));
        let none = Percentiles::of(Vec::new());
        assert_eq!((none.p50, none.p99, none.max), (0, 0, 0));
    }
}
