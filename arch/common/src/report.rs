//! What the log says when a partition stops or misbehaves, in the architecture's own words.

use tandem_core::record::VcpuRecord;
use tandem_core::report::{Notice, StopReason};

/// The architecture's names for the things a report mentions.
pub struct Vocabulary {
    /// The program counter: `RIP` or `PC`.
    pub pc: &'static str,
    /// How a vCPU waits for an interrupt: `halted` or `WFI`.
    pub halt: &'static str,
    /// The architectural exit code and its detail: `exit`/`qualification` or `exception
    /// class`/`ESR_EL2`.
    pub exit: &'static str,
    pub detail: &'static str,
    /// The hardware counter: `TSC` or `count`.
    pub counter: &'static str,
}

pub fn notice(partition: &str, notice: Notice) {
    defmt::warn!("partition {=str}: {}", partition, notice);
}

/// Logs why partition `name` stopped and how many exits it took.
pub fn stop(name: &str, stop: StopReason, record: &VcpuRecord, words: &Vocabulary) {
    defmt::info!(
        "partition {=str} stopped after {=u64} deterministic and {=u64} asynchronous exits",
        name,
        record.deterministic_exits,
        record.asynchronous_exits
    );
    let pc = words.pc;
    match stop {
        StopReason::Shutdown { code } => {
            defmt::info!(
                "partition {=str} stopped: shutdown with code {=u64}",
                name,
                code
            )
        }
        StopReason::MemoryViolation {
            gpa,
            access,
            pc: at,
        } => defmt::warn!(
            "partition {=str} stopped: memory violation: {} at GPA {=u64:#x}, {=str} {=u64:#x}",
            name,
            access,
            gpa.raw(),
            pc,
            at
        ),
        StopReason::UndecodedAccess { gpa, pc: at } => defmt::warn!(
            "partition {=str} stopped: access without syndrome (ESR_EL2.ISV = 0) at GPA {=u64:#x}, {=str} {=u64:#x}",
            name,
            gpa.raw(),
            pc,
            at
        ),
        StopReason::TripleFault { pc: at } => defmt::warn!(
            "partition {=str} stopped: triple fault at {=str} {=u64:#x}",
            name,
            pc,
            at
        ),
        StopReason::ExceptionLoop { vector, pc: at } => defmt::warn!(
            "partition {=str} stopped: exception {=u8} raises itself again on every delivery, at {=str} {=u64:#x}",
            name,
            vector,
            pc,
            at
        ),
        StopReason::HaltedForever { pc: at } => defmt::warn!(
            "partition {=str} stopped: {=str} with no wake-up source at {=str} {=u64:#x}",
            name,
            words.halt,
            pc,
            at
        ),
        StopReason::UnhandledExit {
            code,
            qualification,
            pc: at,
        } => defmt::warn!(
            "partition {=str} stopped: unhandled {=str} {=u32:#x} ({=str} {=u64:#x}) at {=str} {=u64:#x}",
            name,
            words.exit,
            code,
            words.detail,
            qualification,
            pc,
            at
        ),
        StopReason::PoweredOff => {
            defmt::info!(
                "partition {=str} stopped: powered off (PSCI SYSTEM_OFF)",
                name
            )
        }
        StopReason::VcpuOff => defmt::info!(
            "partition {=str} stopped: its last vCPU turned off (PSCI CPU_OFF)",
            name
        ),
        StopReason::WithPartition { vcpu } => defmt::info!(
            "partition {=str} stopped: vCPU {=u32} stopped with its partition",
            name,
            vcpu
        ),
        StopReason::ResetRequested => defmt::warn!(
            "partition {=str} stopped: SYSTEM_RESET while other vCPUs run is not supported",
            name
        ),
        StopReason::Diverged { record: index } => defmt::error!(
            "partition {=str} stopped: replay diverged from the log at record {=u64}",
            name,
            index
        ),
        StopReason::Superseded => {
            defmt::warn!("partition {=str} stopped: the other copy went live", name)
        }
        StopReason::ReplicationFailed => defmt::error!(
            "partition {=str} stopped: the fault-tolerance engine failed",
            name
        ),
        StopReason::Paused => defmt::error!(
            "partition {=str} stopped: paused for re-protection, which did not resume it",
            name
        ),
        StopReason::EntryFailed(e) => {
            defmt::error!("partition {=str} stopped: VM entry failed: {}", name, e)
        }
    }
}
