//! The recovery's timeline: a timestamp at the end of each step, kept in the ledger so the
//! instance that resumes can report what the failed one and the stub did (recovery.md 7, R6).

/// The steps, in order. `Detected` is the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Step {
    Detected,
    /// Every other CPU stopped.
    Quiesced,
    /// Every CPU's vCPU state is in the ledger, VMX / EL2 state cleared.
    Captured,
    /// The locks reset and the detection written to the log (over a UART, which takes time).
    Reported,
    /// The pristine image checked and copied back (microreboot), or the code repaired.
    Image,
    /// The ledger validated and re-attached, exits resolved.
    Ledger,
    /// Every CPU's class-A state rebuilt from the configuration (descriptor tables, VMCS).
    Rebuilt,
    /// Every CPU released to its vCPU.
    Resumed,
}

pub const COUNT: usize = 8;
const NAMES: [&str; COUNT] = [
    "detect", "quiesce", "capture", "report", "image", "ledger", "rebuild", "resume",
];

/// Plain data for the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct Timeline {
    ns: [u64; COUNT],
}

impl Timeline {
    pub const fn new() -> Self {
        Self { ns: [0; COUNT] }
    }

    pub fn mark(&mut self, step: Step, now_ns: u64) {
        self.ns[step as usize] = now_ns;
    }

    pub fn at(&self, step: Step) -> u64 {
        self.ns[step as usize]
    }

    /// Each step after detection with how long it took (0 for one not marked).
    pub fn durations(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        (1..COUNT).map(|i| {
            let start = self.ns[..i].iter().rev().find(|&&t| t != 0).copied();
            let took = match (start, self.ns[i]) {
                (Some(s), e) if e >= s && e != 0 => e - s,
                _ => 0,
            };
            (NAMES[i], took)
        })
    }

    /// From detection to the last step marked.
    pub fn total(&self) -> u64 {
        let end = self.ns.iter().copied().max().unwrap_or(0);
        end.saturating_sub(self.ns[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_follow_the_marks_and_skip_unmarked_steps() {
        let mut t = Timeline::new();
        t.mark(Step::Detected, 100);
        t.mark(Step::Quiesced, 150);
        t.mark(Step::Captured, 170);
        t.mark(Step::Ledger, 300);
        t.mark(Step::Rebuilt, 310);
        t.mark(Step::Resumed, 400);
        let d: Vec<_> = t.durations().collect();
        assert_eq!(
            d,
            [
                ("quiesce", 50),
                ("capture", 20),
                ("report", 0),
                ("image", 0),
                ("ledger", 130),
                ("rebuild", 10),
                ("resume", 90)
            ]
        );
        assert_eq!(t.total(), 300);
    }
}
