//! When recovering is no longer the answer (recovery.md 6.0, rule 8): more than K recoveries
//! within a window of T, which would otherwise loop forever on a permanent fault, ends in a full
//! reset. The recovery times live in the ledger, so the count survives the microreboots it counts.

/// The last recoveries' times, oldest first: plain data for the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct History {
    times_ns: [u64; History::KEEP],
    len: u32,
    /// Recoveries since the cold boot.
    pub total: u32,
}

/// The policy: at most `max` recoveries within any `window_ns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub max: u32,
    pub window_ns: u64,
}

/// Tandem's default: three recoveries within a second of virtual time is a loop.
pub const DEFAULT: Policy = Policy {
    max: 3,
    window_ns: 1_000_000_000,
};

impl History {
    pub const KEEP: usize = 8;

    pub const fn new() -> Self {
        Self {
            times_ns: [0; Self::KEEP],
            len: 0,
            total: 0,
        }
    }

    /// Records a recovery at `now_ns`; whether `policy` still allows it.
    pub fn record(&mut self, now_ns: u64, policy: Policy) -> bool {
        let len = (self.len as usize).min(Self::KEEP);
        if len == Self::KEEP {
            self.times_ns.copy_within(1.., 0);
            self.times_ns[Self::KEEP - 1] = now_ns;
            self.len = Self::KEEP as u32;
        } else {
            self.times_ns[len] = now_ns;
            self.len = len as u32 + 1;
        }
        self.total = self.total.saturating_add(1);
        let recent = self.times_ns[..self.len as usize]
            .iter()
            .filter(|&&t| now_ns.saturating_sub(t) < policy.window_ns)
            .count();
        recent as u32 <= policy.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Policy = Policy {
        max: 3,
        window_ns: 1000,
    };

    #[test]
    fn recoveries_spread_out_are_allowed_forever() {
        let mut h = History::new();
        for i in 0..100 {
            assert!(h.record(i * 600, P));
        }
        assert_eq!(h.total, 100);
    }

    #[test]
    fn the_fourth_within_the_window_escalates() {
        let mut h = History::new();
        assert!(h.record(10, P));
        assert!(h.record(20, P));
        assert!(h.record(30, P));
        assert!(!h.record(40, P));
    }

    #[test]
    fn a_corrupt_length_is_clamped_not_trusted() {
        let mut h = History {
            len: u32::MAX,
            ..History::new()
        };
        h.record(5, P);
        assert!(h.len as usize <= History::KEEP);
    }
}
