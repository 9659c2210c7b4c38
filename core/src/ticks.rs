//! Conversions between a free-running counter's ticks and nanoseconds that saturate instead of
//! wrapping: a guest chooses its timer compare value freely (aarch64 CNTV_CVAL_EL0 up to
//! `u64::MAX`), and a wrapped conversion would turn a deadline in the far future into one in the
//! past, waking the guest early and over and over.

const NS_PER_S: u128 = 1_000_000_000;

/// Nanoseconds that `ticks` of a `hz` counter last, `u64::MAX` if that does not fit; 0 for a
/// counter of unknown frequency (`hz` = 0).
pub fn ticks_to_ns(ticks: u64, hz: u64) -> u64 {
    match hz {
        0 => 0,
        hz => u64::try_from(u128::from(ticks) * NS_PER_S / u128::from(hz)).unwrap_or(u64::MAX),
    }
}

/// Ticks of a `hz` counter in `ns` nanoseconds, `u64::MAX` if that does not fit.
pub fn ns_to_ticks(ns: u64, hz: u64) -> u64 {
    u64::try_from(u128::from(ns) * u128::from(hz) / NS_PER_S).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU `virt`'s generic counter.
    const HZ: u64 = 62_500_000;

    #[test]
    fn converts_exactly_in_range() {
        assert_eq!(ticks_to_ns(62_500_000, HZ), 1_000_000_000);
        assert_eq!(ticks_to_ns(1, HZ), 16);
        assert_eq!(ns_to_ticks(1_000_000_000, HZ), 62_500_000);
        assert_eq!(ns_to_ticks(15, HZ), 0);
    }

    #[test]
    fn saturates_near_the_top_of_the_counter() {
        assert_eq!(ticks_to_ns(u64::MAX, HZ), u64::MAX);
        // 2^60 ticks at 62.5 MHz are 2^64 ns: one past the largest u64, where a truncating
        // conversion gives 0.
        assert_eq!(ticks_to_ns(1 << 60, HZ), u64::MAX);
        assert_eq!(ticks_to_ns((1 << 60) - 1, HZ), u64::MAX - 15);
        assert_eq!(ticks_to_ns(u64::MAX, 1), u64::MAX);
        assert_eq!(ns_to_ticks(u64::MAX, u64::MAX), u64::MAX);
        assert_eq!(ns_to_ticks(u64::MAX, HZ), u64::MAX / 16);
    }

    #[test]
    fn is_monotonic_across_the_overflow_point() {
        let around = (1u64 << 60) - 4..(1u64 << 60) + 4;
        let ns: Vec<u64> = around.map(|t| ticks_to_ns(t, HZ)).collect();
        assert!(ns.windows(2).all(|w| w[0] <= w[1]), "{ns:?}");
    }

    #[test]
    fn an_unknown_frequency_reads_as_zero_time() {
        assert_eq!(ticks_to_ns(u64::MAX, 0), 0);
        assert_eq!(ns_to_ticks(u64::MAX, 0), 0);
    }
}
