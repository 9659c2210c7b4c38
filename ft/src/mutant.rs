//! Deliberate protocol bugs the simulator must catch (compiled only with the `sim` feature).
//! Each one breaks exactly one invariant; the mutant tests prove the simulator notices.

/// Which bugs to switch on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mutants {
    /// Primary releases outputs without waiting for the backup's ack (loses outputs at a crash).
    pub release_before_ack: bool,
    /// Either side goes live on suspicion alone, skipping the arbiter (two live primaries).
    pub skip_arbitration: bool,
    /// Backup re-performs every output at go-live, ignoring `OutputDone` (needless duplicates).
    pub ignore_output_done: bool,
    /// Backup skips execution-point and output comparison (divergence goes unnoticed).
    pub skip_divergence_check: bool,
    /// Backup runs to the next exit past a horizon that lies before it (precise mode): it passes
    /// interrupts logged later in the interval and reports a divergence that was never injected.
    pub ignore_precise_horizon: bool,
    /// Primary releases outputs after a stall without asking the arbiter whether the backup took
    /// over meanwhile (the old primary prints after the new one went live).
    pub skip_fence: bool,
    /// Backup at go-live skips the first output without `OutputDone` (a gap when the primary
    /// never performed it).
    pub skip_first_pending: bool,
    /// The host of a backup gone live performs the held outputs only after the guest's next
    /// output (an integration bug: the client sees outputs out of order).
    pub late_go_live_outputs: bool,
    /// Backup at go-live forgets the last output without `OutputDone` (lost if the primary
    /// never performed it).
    pub drop_last_pending: bool,
    /// Backup catches up but never goes live (the partition is lost although a copy survives).
    pub never_go_live: bool,
    /// Re-protection builds the new backup from the guest as it was when copying began, ignoring
    /// what it dirtied since (the new backup diverges without any replay bug).
    pub stale_clone: bool,
}
