//! A latency histogram in fixed memory, for the measurements the FT copies report (how far the
//! backup lags, how long the output rule holds a line): log-linear buckets, eight per power of
//! two, so a percentile is within 12.5 % of the true value and recording is a few instructions.

/// Sub-buckets per power of two, as a power of two.
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// Values below `SUB` have a bucket each; above, `SUB` buckets per power of two up to 2^63.
const BUCKETS: usize = (SUB * (64 - SUB_BITS as u64 + 1)) as usize;

/// Counts of samples by bucket, and the largest sample.
#[derive(Clone, Debug)]
pub struct Latencies {
    counts: [u32; BUCKETS],
    samples: u64,
    max: u64,
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

fn bucket(value: u64) -> usize {
    if value < SUB {
        return value as usize;
    }
    let msb = 63 - value.leading_zeros();
    let sub = (value >> (msb - SUB_BITS)) & (SUB - 1);
    ((msb - SUB_BITS + 1) as u64 * SUB + sub) as usize
}

/// The largest value bucket `index` holds.
fn upper_bound(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB {
        return index;
    }
    let msb = (index / SUB) as u32 + SUB_BITS - 1;
    let low = (SUB + index % SUB) << (msb - SUB_BITS);
    low.saturating_add((1 << (msb - SUB_BITS)) - 1)
}

impl Latencies {
    pub const fn new() -> Self {
        Self {
            counts: [0; BUCKETS],
            samples: 0,
            max: 0,
        }
    }

    pub fn record(&mut self, value: u64) {
        let count = &mut self.counts[bucket(value)];
        *count = count.saturating_add(1);
        self.samples += 1;
        self.max = self.max.max(value);
    }

    pub fn samples(&self) -> u64 {
        self.samples
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// A value at least `per_mille`‰ of the samples do not exceed (the upper bound of the bucket
    /// that sample falls in, never above the largest sample); 0 without samples.
    pub fn percentile(&self, per_mille: u64) -> u64 {
        let rank = (self.samples * per_mille.min(1000)).div_ceil(1000).max(1);
        let mut seen = 0;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += u64::from(count);
            if seen >= rank {
                return upper_bound(index).min(self.max);
            }
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        assert_eq!(upper_bound(bucket(u64::MAX)), u64::MAX);
        assert!(bucket(u64::MAX) < BUCKETS);
        for v in [0, 1, 7, 8, 9, 15, 16, 17, 1000, 123_456_789, 1 << 40] {
            let b = bucket(v);
            assert!(upper_bound(b) >= v, "{v} above its bucket's bound");
            assert!(b == 0 || upper_bound(b - 1) < v, "{v} belongs lower");
        }
    }

    #[test]
    fn percentiles_are_within_an_eighth() {
        let mut lat = Latencies::new();
        assert_eq!(lat.percentile(990), 0);
        for v in 1..=1000u64 {
            lat.record(v * 1000);
        }
        assert_eq!(lat.samples(), 1000);
        assert_eq!(lat.max(), 1_000_000);
        let p50 = lat.percentile(500);
        assert!((500_000..=562_500).contains(&p50), "p50 {p50}");
        let p99 = lat.percentile(990);
        assert!((990_000..=1_000_000).contains(&p99), "p99 {p99}");
        assert_eq!(lat.percentile(1000), 1_000_000);
    }

    proptest::proptest! {
        #[test]
        fn a_percentile_bounds_its_share_of_samples(
            values in proptest::collection::vec(0u64..1 << 50, 1..200),
            per_mille in 1u64..=1000,
        ) {
            let mut lat = Latencies::new();
            for &v in &values {
                lat.record(v);
            }
            let p = lat.percentile(per_mille);
            let at_most = values.iter().filter(|&&v| v <= p).count() as u64;
            proptest::prop_assert!(at_most * 1000 >= per_mille * values.len() as u64);
            proptest::prop_assert!(p <= lat.max());
        }
    }
}
