//! The exit journal: what a vCPU's exit loop writes to its ledger slot so that a hypervisor
//! failure in the middle of an exit is either rolled back or completed, never half done
//! (recovery.md 6.0 rule 4, 6.8).
//!
//! At each exit the loop checkpoints the portable record and the guest's general registers and
//! marks the exit *handling*; the handler computes, the outcome is committed (device state,
//! registers, PC) and counted, and the exit is marked *committed*; only then does the line it
//! completed leave for the console, from the journal's outbox, and the exit becomes *idle*.
//! A recovery finds each journal in one of the three phases: handling → restore the checkpoint
//! (the guest executes the instruction again, nothing was printed); committed → print the outbox
//! unless its print progress shows it printed; idle → nothing to do.

use crate::console_out::ConsoleOut;
use crate::devices::line::LINE_MAX;
use crate::hypercall::CONSOLE_WRITE_MAX;
use crate::record::VcpuRecord;

/// General registers a checkpoint holds: the most any backend has (aarch64's x0-x30).
pub const MAX_GPRS: usize = 31;

/// Where an exit is; stored as a number so a corrupt value reads as [`Phase::Corrupt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Idle,
    Handling,
    Committed,
    Corrupt(u32),
}

const IDLE: u32 = 0;
const HANDLING: u32 = 0x4841_4e44;
const COMMITTED: u32 = 0x434f_4d54;

/// Bytes an outbox holds: one hypercall's console write (its lines, each ended by a newline),
/// or a UART's line.
pub const OUTBOX_BYTES: usize = CONSOLE_WRITE_MAX as usize + LINE_MAX + 1;

/// The lines one exit completed, waiting for the commit to print them: the `seq`th batch this
/// vCPU made. Each line is stored followed by a newline (lines never contain one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Outbox {
    pub seq: u64,
    len: u32,
    bytes: [u8; OUTBOX_BYTES],
}

impl Outbox {
    pub const fn new() -> Self {
        Self {
            seq: 0,
            len: 0,
            bytes: [0; OUTBOX_BYTES],
        }
    }

    /// The lines waiting (a corrupt length reads as none).
    pub fn lines(&self) -> impl Iterator<Item = &[u8]> {
        let held = self.bytes.get(..self.len as usize).unwrap_or(&[]);
        held.split(|&b| b == b'\n')
            .take(held.iter().filter(|&&b| b == b'\n').count())
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `line` to the batch, the first line of a new one if the outbox was empty; false if
    /// it does not fit (it cannot, for the outputs one exit makes).
    pub fn put(&mut self, line: &[u8]) -> bool {
        let at = self.len as usize;
        let Some(room) = self.bytes.get_mut(at..at + line.len() + 1) else {
            return false;
        };
        if at == 0 {
            self.seq = self.seq.wrapping_add(1);
        }
        room[..line.len()].copy_from_slice(line);
        room[line.len()] = b'\n';
        self.len = (at + line.len() + 1) as u32;
        true
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }
}

impl Default for Outbox {
    fn default() -> Self {
        Self::new()
    }
}

/// How far the console got with a vCPU's latest batch: lines done, bytes of the next line
/// already on the wire, and what the console had open before that line began, so a line cut
/// short is finished byte-exactly instead of printed again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct PrintProgress {
    pub seq: u64,
    pub lines: u32,
    pub bytes: u32,
    pub before: ConsoleOut,
}

impl PrintProgress {
    pub const fn new() -> Self {
        Self {
            seq: 0,
            lines: 0,
            bytes: 0,
            before: ConsoleOut::new(),
        }
    }

    /// Starts printing batch `seq`, unless that batch is the one already under way.
    pub fn start(&mut self, seq: u64) {
        if self.seq != seq {
            *self = Self { seq, ..Self::new() };
        }
    }
}

impl Default for PrintProgress {
    fn default() -> Self {
        Self::new()
    }
}

/// One vCPU's exit journal. Plain `#[repr(C)]` data, valid when all-zero (idle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct ExitJournal {
    phase: u32,
    /// The guest PC of the exit being handled.
    pub pc: u64,
    /// Exits journaled so far on this vCPU.
    pub exits: u64,
    /// The record as it was when the exit began.
    pub checkpoint: VcpuRecord,
    /// The guest's general registers as they were when the exit began.
    pub gprs: [u64; MAX_GPRS],
    pub outbox: Outbox,
    pub printed: PrintProgress,
}

impl ExitJournal {
    pub const fn new() -> Self {
        Self {
            phase: IDLE,
            pc: 0,
            exits: 0,
            checkpoint: VcpuRecord::new(0),
            gprs: [0; MAX_GPRS],
            outbox: Outbox::new(),
            printed: PrintProgress::new(),
        }
    }

    pub fn phase(&self) -> Phase {
        match self.phase {
            IDLE => Phase::Idle,
            HANDLING => Phase::Handling,
            COMMITTED => Phase::Committed,
            other => Phase::Corrupt(other),
        }
    }

    /// An exit at `pc` begins: `record` and the registers already saved in [`Self::gprs`] are
    /// what a roll-back restores.
    pub fn begin(&mut self, pc: u64, record: &VcpuRecord) {
        self.pc = pc;
        self.checkpoint = *record;
        self.exits = self.exits.wrapping_add(1);
        // The checkpoint is whole before the phase says it may be used.
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::Release);
        self.phase = HANDLING;
    }

    /// The exit's effects are committed and counted: a recovery now completes it.
    pub fn committed(&mut self) {
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::Release);
        self.phase = COMMITTED;
    }

    /// The exit is over, its line (if any) printed.
    pub fn idle(&mut self) {
        self.outbox.clear();
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::Release);
        self.phase = IDLE;
    }
}

impl Default for ExitJournal {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_moves_through_handling_and_committed_back_to_idle() {
        let mut j = ExitJournal::new();
        assert_eq!(j.phase(), Phase::Idle);
        let mut record = VcpuRecord::new(5);
        record.deterministic_exits = 9;
        j.begin(0x1000, &record);
        assert_eq!(j.phase(), Phase::Handling);
        assert_eq!(j.checkpoint.deterministic_exits, 9);
        assert!(j.outbox.put(b"count 1"));
        assert!(j.outbox.put(b"count 2"));
        j.committed();
        assert_eq!(j.phase(), Phase::Committed);
        assert_eq!(
            j.outbox.lines().collect::<Vec<_>>(),
            [b"count 1", b"count 2"]
        );
        assert_eq!(j.outbox.seq, 1);
        j.idle();
        assert_eq!(j.phase(), Phase::Idle);
        assert!(j.outbox.is_empty());
    }

    #[test]
    fn corrupt_phases_and_lengths_are_recognised() {
        let mut j = ExitJournal::new();
        j.phase = 7;
        assert_eq!(j.phase(), Phase::Corrupt(7));
        j.outbox.len = u32::MAX;
        assert_eq!(j.outbox.lines().count(), 0);
    }

    #[test]
    fn the_outbox_takes_one_exits_worth_and_refuses_more() {
        let mut o = Outbox::new();
        assert!(o.put(&[b'x'; CONSOLE_WRITE_MAX as usize]));
        assert!(!o.put(&[b'y'; LINE_MAX + 1]));
        assert!(o.put(b""));
        assert_eq!(o.lines().count(), 2);
        o.clear();
        assert!(o.put(b"next"));
        assert_eq!(o.seq, 2);
    }
}
