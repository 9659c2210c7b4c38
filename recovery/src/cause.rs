//! Why a recovery started, and why one gave up and reset the machine in full. Both are stored in
//! the ledger as plain numbers, so both read back from corrupt memory as "unknown", never as a
//! wrong enum value.

/// What a detector saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Detected {
    /// A Rust panic in hypervisor code.
    Panic = 1,
    /// A CPU exception taken in hypervisor context.
    Exception = 2,
    /// A CPU's heartbeat stopped for the watchdog's strike count (its buddy saw it).
    Hang = 3,
    /// A lock was held past the watchdog's bound.
    LockHeld = 4,
    /// A VM entry failed: the VMCS or EL2 state the hypervisor keeps is wrong (a guest cannot
    /// make an entry fail).
    EntryFailed = 5,
}

impl Detected {
    pub fn from_raw(raw: u32) -> Option<Self> {
        [
            Self::Panic,
            Self::Exception,
            Self::Hang,
            Self::LockHeld,
            Self::EntryFailed,
        ]
        .into_iter()
        .find(|c| *c as u32 == raw)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Panic => "panic",
            Self::Exception => "exception",
            Self::Hang => "hang",
            Self::LockHeld => "lock-held",
            Self::EntryFailed => "entry-failure",
        }
    }
}

/// Why the machine was reset in full instead of recovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ResetCause {
    None = 0,
    /// The pristine image's hash does not match the one taken at cold boot.
    PristineCorrupt = 1,
    /// More recoveries than the escalation policy allows within its window.
    TooManyRecoveries = 2,
    /// A failure while a recovery was running.
    FailedDuringRecovery = 3,
    /// The ledger's header failed validation, so nothing could be re-attached.
    LedgerInvalid = 4,
    /// A CPU did not stop when asked to.
    CpuDidNotStop = 5,
    /// No partition made progress after the recovery.
    NoProgress = 6,
}

impl ResetCause {
    pub fn from_raw(raw: u32) -> Option<Self> {
        [
            Self::None,
            Self::PristineCorrupt,
            Self::TooManyRecoveries,
            Self::FailedDuringRecovery,
            Self::LedgerInvalid,
            Self::CpuDidNotStop,
            Self::NoProgress,
        ]
        .into_iter()
        .find(|c| *c as u32 == raw)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::None => "no full reset",
            Self::PristineCorrupt => "the pristine image does not match its hash",
            Self::TooManyRecoveries => "too many recoveries in the escalation window",
            Self::FailedDuringRecovery => "a failure during recovery",
            Self::LedgerInvalid => "the ledger failed validation",
            Self::CpuDidNotStop => "a CPU did not stop for the recovery",
            Self::NoProgress => "no partition made progress after the recovery",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_values_round_trip_and_unknown_ones_are_refused() {
        for c in [
            Detected::Panic,
            Detected::Exception,
            Detected::Hang,
            Detected::LockHeld,
        ] {
            assert_eq!(Detected::from_raw(c as u32), Some(c));
        }
        assert_eq!(Detected::from_raw(0), None);
        assert_eq!(Detected::from_raw(99), None);
        assert_eq!(ResetCause::from_raw(1), Some(ResetCause::PristineCorrupt));
        assert_eq!(ResetCause::from_raw(77), None);
    }
}
