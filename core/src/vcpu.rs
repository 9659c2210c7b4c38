//! The contract an architecture backend implements for one virtual CPU.

use crate::devices::vgic::VirtualGic;
use crate::exit::Exit;
use crate::journal::MAX_GPRS;
use crate::point;

/// What finishing an exit does to the guest. The backend applies it as the last step of the exit
/// (register write and PC advance together), so a handler cut short can be run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// The instruction is done; advance past it.
    Done,
    /// The instruction read this value (port, MMIO, MSR); write it to its destination and advance.
    Value(u64),
    /// CPUID's four result registers; advance.
    Cpuid([u32; 4]),
    /// Hypercall return: status and one value; advance.
    Hypercall { status: i64, value: u64 },
    /// A counter read ([`crate::exit::Exit::CounterRead`]): the partition's time in nanoseconds,
    /// which the backend turns into its counter's units where the instruction puts its result;
    /// advance.
    Counter { ns: u64 },
    /// Deliver a fault to the guest at this instruction; do not advance.
    Fault(GuestFault),
}

/// Faults the core asks a backend to deliver to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestFault {
    /// x86 #GP(0); on aarch64 an undefined-instruction exception.
    GeneralProtection,
    /// x86 #UD; on aarch64 an undefined-instruction exception.
    InvalidOpcode,
    /// aarch64: a synchronous external abort on the access (or instruction fetch) the exit
    /// reported, as from a bus that answered with an error. x86 has no such fault: its
    /// partitions always stop on an unbacked access (`config::Unbacked`).
    ExternalAbort,
}

/// Why the backend could not run the vCPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum EntryError {
    /// The hardware refused the guest state (VT-x: VM-entry failure with this reason).
    InvalidGuestState { reason: u32 },
    /// The virtualization instruction itself failed (VT-x: VMfail with this instruction error).
    InstructionFailed { error: u32 },
}

/// A register index [`Vcpu::set_gpr`] does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NoSuchRegister {
    /// The index asked for.
    pub index: usize,
}

/// One virtual CPU, pinned to the physical CPU that runs it.
///
/// Besides running the guest, it gives portable access to the guest's general registers and PC,
/// so fault tolerance (execution points, replayed reads) and recovery (rolling an exit back) need
/// nothing backend-specific.
pub trait Vcpu {
    /// How many general-purpose registers [`Vcpu::gpr`] indexes: x86_64 16, in the SDM's register
    /// number order (RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8–R15; SDM Vol. 2A, 2.1.5), aarch64 31
    /// (x0–x30).
    const GPRS: usize;

    /// Enters the guest and returns at its next exit.
    fn run(&mut self) -> Result<Exit, EntryError>;
    /// Applies the result of the exit last returned by [`Vcpu::run`].
    fn complete(&mut self, completion: Completion);
    /// Requests delivery of `vector` as soon as the guest can take an interrupt.
    fn raise_interrupt(&mut self, vector: u8);
    /// Withdraws `vector` if it still waits to be delivered: a level-triggered device line
    /// dropped before the guest took it. A backend that delivers nothing it could withdraw
    /// ignores it.
    fn lower_interrupt(&mut self, vector: u8) {
        let _ = vector;
    }
    /// Whether an interrupt raised earlier is still waiting to be delivered.
    fn interrupt_pending(&self) -> bool;
    /// Whether the guest can take an interrupt at all now (x86 RFLAGS.IF, aarch64 PSTATE.I).
    fn accepts_interrupts(&self) -> bool;
    /// Makes [`Vcpu::run`] return [`Exit::TimerExpired`] no later than this time, or disarms.
    fn set_timer_deadline(&mut self, deadline_ns: Option<u64>);
    /// The guest's program counter, for reports and execution points.
    fn pc(&self) -> u64;
    /// Moves the guest's program counter (rolling an exit back, or replaying one).
    fn set_pc(&mut self, pc: u64);
    /// General register `index` (< [`Vcpu::GPRS`]), or `None` past the last one.
    fn gpr(&self, index: usize) -> Option<u64>;
    /// Writes general register `index`.
    fn set_gpr(&mut self, index: usize, value: u64) -> Result<(), NoSuchRegister>;
    /// Copies the general registers, in [`Vcpu::gpr`]'s order, into `into` (an exit's
    /// checkpoint, [`crate::journal`]). Backends with the registers in one array copy it whole.
    fn save_gprs(&self, into: &mut [u64; MAX_GPRS]) {
        for (i, slot) in into.iter_mut().enumerate().take(Self::GPRS) {
            *slot = self.gpr(i).unwrap_or(0);
        }
    }
    /// A hash of the general registers and the PC: the part of an execution point that catches a
    /// replay that diverged without changing the exit count.
    fn register_hash(&self) -> u64 {
        point::register_hash(
            (0..Self::GPRS)
                .filter_map(|i| self.gpr(i))
                .chain([self.pc()]),
        )
    }
    /// When a timer the guest drives itself (aarch64: the EL1 virtual timer) will raise an
    /// interrupt, in platform nanoseconds; `None` if it is off or masked. A halted vCPU sleeps until
    /// then instead of being stopped as halted forever.
    fn wake_deadline(&self) -> Option<u64> {
        None
    }
    /// The emulated GIC this vCPU's partition sees (aarch64), whose MMIO the core handles and
    /// whose pending interrupts the backend delivers; `None` where the architecture has none.
    fn virtual_gic(&mut self) -> Option<&mut VirtualGic> {
        None
    }
}
