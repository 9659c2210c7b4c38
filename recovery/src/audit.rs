//! The audit after a resume (recovery.md 6.10): each resumed partition must show progress, its
//! vCPU's exits advancing, within a bound; one that does not is stopped and reported while the
//! others go on.

/// One vCPU's audit, plain data for the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct Audit {
    /// Exits the vCPU had made when it resumed, and by when it must have made more.
    exits_at_resume: u64,
    deadline_ns: u64,
    state: u32,
}

const DONE: u32 = 0;
const PENDING: u32 = 1;

/// What an audit step found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to say (no audit pending, or still within the bound).
    Quiet,
    /// The vCPU made progress since it resumed: reported once.
    Progressed { exits: u64 },
    /// The bound passed without progress.
    Stalled,
}

impl Audit {
    /// How long a resumed vCPU has to make an exit: generous next to the watchdog period, which
    /// bounds the time between two exits of any running vCPU.
    pub const BOUND_NS: u64 = 200_000_000;

    pub const fn new() -> Self {
        Self {
            exits_at_resume: 0,
            deadline_ns: 0,
            state: DONE,
        }
    }

    /// The vCPU resumes with `exits` made, at `now_ns`.
    pub fn start(&mut self, exits: u64, now_ns: u64) {
        *self = Self {
            exits_at_resume: exits,
            deadline_ns: now_ns.saturating_add(Self::BOUND_NS),
            state: PENDING,
        };
    }

    /// Checks the vCPU with `exits` made at `now_ns`.
    pub fn check(&mut self, exits: u64, now_ns: u64) -> Verdict {
        if self.state != PENDING {
            return Verdict::Quiet;
        }
        if exits > self.exits_at_resume {
            self.state = DONE;
            return Verdict::Progressed {
                exits: exits - self.exits_at_resume,
            };
        }
        if now_ns > self.deadline_ns {
            self.state = DONE;
            return Verdict::Stalled;
        }
        Verdict::Quiet
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_reported_once_and_a_stall_after_the_bound() {
        let mut a = Audit::new();
        assert_eq!(a.check(5, 0), Verdict::Quiet);
        a.start(10, 1000);
        assert_eq!(a.check(10, 2000), Verdict::Quiet);
        assert_eq!(a.check(12, 3000), Verdict::Progressed { exits: 2 });
        assert_eq!(a.check(13, 4000), Verdict::Quiet);
        a.start(20, 0);
        assert_eq!(a.check(20, Audit::BOUND_NS + 1), Verdict::Stalled);
        assert_eq!(a.check(21, Audit::BOUND_NS + 2), Verdict::Quiet);
    }
}
