//! Conversions between a free-running counter's ticks and nanoseconds, as 32.32 fixed-point
//! factors: on the exit path a conversion is a multiply and a shift, not a 128-bit division (a
//! library call of dozens of instructions on aarch64). They saturate instead of wrapping: a guest
//! chooses its timer compare value freely (aarch64 CNTV_CVAL_EL0 up to `u64::MAX`), and a wrapped
//! conversion would turn a deadline in the far future into one in the past, waking the guest
//! early and over and over.

const NS_PER_S: u64 = 1_000_000_000;
const FRACTION_BITS: u32 = 32;

/// A conversion factor `num / den` in 32.32 fixed point (exact for the power-of-two ratios of
/// common counters: 16 ns per tick at 62.5 MHz; within 2^-32 of the ratio otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale(u64);

impl Scale {
    /// `num / den`, the largest factor if it does not fit; 0 when `den` is 0.
    pub const fn ratio(num: u64, den: u64) -> Self {
        if den == 0 {
            return Self(0);
        }
        let fixed = ((num as u128) << FRACTION_BITS) / den as u128;
        Self(if fixed > u64::MAX as u128 {
            u64::MAX
        } else {
            fixed as u64
        })
    }

    /// Nanoseconds per tick of a `hz` counter (0 for an unknown frequency).
    pub const fn ns_per_tick(hz: u64) -> Self {
        Self::ratio(NS_PER_S, hz)
    }

    /// Ticks of a `hz` counter per nanosecond.
    pub const fn ticks_per_ns(hz: u64) -> Self {
        Self::ratio(hz, NS_PER_S)
    }

    /// The factor as stored (for an atomic), and back.
    pub const fn raw(self) -> u64 {
        self.0
    }

    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// `value` times the factor, `u64::MAX` if that does not fit.
    #[inline]
    pub fn apply(self, value: u64) -> u64 {
        let product = u128::from(value) * u128::from(self.0);
        u64::try_from(product >> FRACTION_BITS).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU `virt`'s generic counter.
    const HZ: u64 = 62_500_000;

    fn to_ns(ticks: u64, hz: u64) -> u64 {
        Scale::ns_per_tick(hz).apply(ticks)
    }

    fn to_ticks(ns: u64, hz: u64) -> u64 {
        Scale::ticks_per_ns(hz).apply(ns)
    }

    #[test]
    fn converts_exactly_in_range() {
        assert_eq!(to_ns(62_500_000, HZ), 1_000_000_000);
        assert_eq!(to_ns(1, HZ), 16);
        assert_eq!(to_ticks(1_000_000_000, HZ), 62_500_000);
        assert_eq!(to_ticks(15, HZ), 0);
        // Bochs's 4 MHz TSC: 250 ns per tick exactly, ticks per ns within a tick per 2^32.
        assert_eq!(to_ns(4_000_000, 4_000_000), 1_000_000_000);
        assert_eq!(to_ticks(1_000_000_000, 4_000_000), 3_999_999);
    }

    #[test]
    fn saturates_near_the_top_of_the_counter() {
        assert_eq!(to_ns(u64::MAX, HZ), u64::MAX);
        // 2^60 ticks at 62.5 MHz are 2^64 ns: one past the largest u64, where a truncating
        // conversion gives 0.
        assert_eq!(to_ns(1 << 60, HZ), u64::MAX);
        assert_eq!(to_ns((1 << 60) - 1, HZ), u64::MAX - 15);
        assert_eq!(to_ns(u64::MAX, 1), u64::MAX);
        assert_eq!(to_ticks(u64::MAX, u64::MAX), u64::MAX);
        assert_eq!(to_ticks(u64::MAX, HZ), u64::MAX / 16);
    }

    #[test]
    fn is_monotonic_across_the_overflow_point() {
        let around = (1u64 << 60) - 4..(1u64 << 60) + 4;
        let ns: Vec<u64> = around.map(|t| to_ns(t, HZ)).collect();
        assert!(ns.windows(2).all(|w| w[0] <= w[1]), "{ns:?}");
    }

    #[test]
    fn an_unknown_frequency_reads_as_zero_time() {
        assert_eq!(to_ns(u64::MAX, 0), 0);
        assert_eq!(to_ticks(u64::MAX, 0), 0);
    }
}
