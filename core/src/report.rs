//! What the core reports about partitions: why one stopped, and notable guest misbehaviour that
//! did not stop it.

use crate::addr::GuestPhysAddr;
use crate::exit::Access;
use crate::vcpu::EntryError;

/// Why a partition stopped. Every other partition keeps running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum StopReason {
    /// The guest asked to stop through the `SHUTDOWN` hypercall.
    Shutdown { code: u64 },
    /// The guest touched guest-physical memory it was not given.
    MemoryViolation {
        gpa: GuestPhysAddr,
        access: Access,
        pc: u64,
    },
    /// The guest's CPU shut down (x86 triple fault).
    TripleFault { pc: u64 },
    /// Every delivery of exception `vector` raised it again: the guest could never progress.
    ExceptionLoop { vector: u8, pc: u64 },
    /// The guest halted with no way to be woken (interrupts off or no timer armed).
    HaltedForever { pc: u64 },
    /// The guest caused an exit Tandem has no policy for.
    UnhandledExit {
        code: u32,
        qualification: u64,
        pc: u64,
    },
    /// The hardware refused to run the guest.
    EntryFailed(EntryError),
    /// The guest accessed memory in a way that could not be decoded or emulated.
    UndecodedAccess { gpa: GuestPhysAddr, pc: u64 },
    /// The guest powered its partition off (PSCI SYSTEM_OFF).
    PoweredOff,
    /// The guest asked for its partition to restart from its image (PSCI SYSTEM_RESET).
    ResetRequested,
    /// The guest stopped this vCPU (PSCI CPU_OFF); the partition's other vCPUs keep running.
    VcpuOff,
    /// Another vCPU of the partition stopped it (powered off, asked for a reset while this one
    /// ran, or failed), so this one stops too.
    WithPartition { vcpu: u32 },
    /// A backup copy's replay departed from the primary's log at this record.
    Diverged { record: u64 },
    /// The other copy of this fault-tolerant partition won arbitration and runs it now.
    Superseded,
    /// The fault-tolerance engine failed (a broken link or exit accounting).
    ReplicationFailed,
    /// Not a stop: the replica paused the vCPU at a deterministic boundary ([`Gate::Pause`]);
    /// running it again goes on from there.
    ///
    /// [`Gate::Pause`]: crate::replica::Gate::Pause
    Paused,
}

/// Guest misbehaviour that is answered (with all-ones, a dropped write or a fault) and reported,
/// without stopping the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Notice {
    DeniedPort {
        port: u16,
        write: bool,
        pc: u64,
    },
    DeniedMsr {
        msr: u32,
        write: bool,
        pc: u64,
    },
    ForbiddenInstruction {
        code: u32,
        pc: u64,
    },
    /// An access nothing backs, answered with a synchronous external abort.
    ExternalAbort {
        gpa: GuestPhysAddr,
        access: Access,
        pc: u64,
    },
    BadHypercall {
        nr: u64,
        status: i64,
        pc: u64,
    },
    /// A power-management call refused with a negative status (e.g. CPU_ON of a CPU the partition
    /// does not own).
    RefusedPowerCall {
        status: i32,
        target: u64,
        pc: u64,
    },
}
