//! What a recovery does with each vCPU's exit journal (recovery.md 6.8): an exit still being
//! handled is rolled back (the guest executes its instruction again, nothing of it was printed),
//! a committed one is completed (its lines finish printing), an idle one needs nothing. A
//! journal whose phase word is not one of the three is corrupt: its partition's state cannot be
//! trusted, and the partition is stopped.

use tandem_core::journal::{ExitJournal, Phase};
use tandem_core::record::VcpuRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Between exits: nothing to undo or finish.
    Nothing,
    /// Restore the checkpointed record and registers, and the PC of the exit.
    RollBack { pc: u64 },
    /// Print what is left of the committed exit's lines.
    Finish,
}

/// The journal's phase word is garbage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorruptJournal {
    pub phase: u32,
}

pub fn resolve(journal: &ExitJournal) -> Result<Resolution, CorruptJournal> {
    match journal.phase() {
        Phase::Idle => Ok(Resolution::Nothing),
        Phase::Handling => Ok(Resolution::RollBack { pc: journal.pc }),
        Phase::Committed => Ok(Resolution::Finish),
        Phase::Corrupt(phase) => Err(CorruptJournal { phase }),
    }
}

/// Rolls `record` back to the journal's checkpoint: the exit never happened.
pub fn roll_back(journal: &ExitJournal, record: &mut VcpuRecord) {
    *record = journal.checkpoint;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_phase_resolves_to_its_action() {
        let mut j = ExitJournal::new();
        assert_eq!(resolve(&j), Ok(Resolution::Nothing));
        let mut record = VcpuRecord::new(1);
        record.deterministic_exits = 41;
        j.begin(0x2000, &record);
        record.deterministic_exits = 42;
        assert_eq!(resolve(&j), Ok(Resolution::RollBack { pc: 0x2000 }));
        roll_back(&j, &mut record);
        assert_eq!(record.deterministic_exits, 41);
        j.committed();
        assert_eq!(resolve(&j), Ok(Resolution::Finish));
    }
}
