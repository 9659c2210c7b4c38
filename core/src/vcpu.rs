//! The contract an architecture backend implements for one virtual CPU.

use crate::devices::vgic::VirtualGic;
use crate::exit::Exit;

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

/// One virtual CPU, pinned to the physical CPU that runs it.
pub trait Vcpu {
    /// Enters the guest and returns at its next exit.
    fn run(&mut self) -> Result<Exit, EntryError>;
    /// Applies the result of the exit last returned by [`Vcpu::run`].
    fn complete(&mut self, completion: Completion);
    /// Requests delivery of `vector` as soon as the guest can take an interrupt.
    fn raise_interrupt(&mut self, vector: u8);
    /// Whether an interrupt raised earlier is still waiting to be delivered.
    fn interrupt_pending(&self) -> bool;
    /// Whether the guest can take an interrupt at all now (x86 RFLAGS.IF, aarch64 PSTATE.I).
    fn accepts_interrupts(&self) -> bool;
    /// Makes [`Vcpu::run`] return [`Exit::TimerExpired`] no later than this time, or disarms.
    fn set_timer_deadline(&mut self, deadline_ns: Option<u64>);
    /// The guest's program counter, for reports and execution points.
    fn pc(&self) -> u64;
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
