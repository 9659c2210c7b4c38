//! The portable exit enum every backend returns from [`crate::vcpu::Vcpu::run`].
//!
//! Exits caused by a guest instruction happen at the same point in every execution of the same
//! guest with the same inputs; interrupts and timer expiry do not. Fault-tolerant replay and the
//! microreboot commit rule both rest on that difference, so it is part of the type.

use crate::addr::GuestPhysAddr;
use crate::devices::sgi::SgiRequest;
use crate::power::PowerRequest;

/// The kind of a guest memory access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Access {
    /// A load.
    Read,
    /// A store.
    Write,
    /// An instruction fetch.
    Execute,
}

/// Why a partition's CPU shut itself down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ShutdownCause {
    /// x86 triple fault: an exception while delivering a double fault.
    TripleFault,
    /// Delivering exception `vector` raises the same exception again before its handler runs
    /// one instruction (x86 #DB on a breakpointed handler, #AC on a misaligned stack: XSA-156).
    ExceptionLoop { vector: u8 },
}

/// Why [`crate::vcpu::Vcpu::run`] returned: one portable value per architectural exit.
///
/// `#[non_exhaustive]` so that code outside `core` cannot match it exhaustively and silently absorb
/// a variant added later; inside `core`, [`Exit::kind`] names every variant, so a new one does not
/// compile until it is classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exit {
    // Deterministic: caused by the guest instruction at the current PC.
    /// x86 `IN`/`INS` of a port the partition does not own.
    PortRead {
        /// The I/O port.
        port: u16,
        /// Access width in bytes: 1, 2 or 4.
        size: u8,
    },
    /// x86 `OUT`/`OUTS` to a port the partition does not own.
    PortWrite {
        /// The I/O port.
        port: u16,
        /// Access width in bytes: 1, 2 or 4.
        size: u8,
        /// The value written, in its low `size` bytes.
        value: u32,
    },
    /// A decoded load from guest-physical memory no region backs (an emulated device).
    MmioRead {
        /// The address accessed.
        gpa: GuestPhysAddr,
        /// Access width in bytes: 1, 2, 4 or 8.
        size: u8,
    },
    /// A decoded store to guest-physical memory no region backs (an emulated device).
    MmioWrite {
        /// The address accessed.
        gpa: GuestPhysAddr,
        /// Access width in bytes: 1, 2, 4 or 8.
        size: u8,
        /// The value stored, in its low `size` bytes.
        value: u64,
    },
    /// CPUID, with what the physical CPU answered so the core can filter it.
    Cpuid {
        /// EAX on entry.
        leaf: u32,
        /// ECX on entry.
        subleaf: u32,
        /// EAX, EBX, ECX, EDX as the physical CPU returned them.
        host: [u32; 4],
    },
    /// x86 `RDMSR` of an MSR the partition may not read directly.
    MsrRead {
        /// ECX: the MSR index.
        msr: u32,
    },
    /// x86 `WRMSR` of an MSR the partition may not write directly.
    MsrWrite {
        /// ECX: the MSR index.
        msr: u32,
        /// EDX:EAX.
        value: u64,
    },
    /// A Tandem hypercall (x86 `VMCALL`, aarch64 `HVC #0`); see [`crate::hypercall`].
    Hypercall {
        /// The call number (x86 RAX, aarch64 x0).
        nr: u64,
        /// The four arguments (x86 RDI, RSI, RDX, R10; aarch64 x1–x4).
        args: [u64; 4],
    },
    /// The guest read the CPU's free-running counter where the backend traps it: for a
    /// fault-tolerant partition, whose copies must read the same value (x86 RDTSC, RDTSCP and
    /// RDMSR of IA32_TSC; aarch64 MRS of CNTPCT_EL0).
    CounterRead,
    /// HLT / WFI: the vCPU has nothing to do until its next interrupt.
    Halt,
    /// x86 PAUSE, a spin-wait hint, where the backend traps it: for a fault-tolerant partition,
    /// whose interrupts are delivered only at deterministic exits, so a guest spinning on a flag
    /// its interrupt handler sets reaches one.
    Pause,
    /// A guest-physical access no memory region or device backs.
    PageFault {
        /// The address accessed.
        gpa: GuestPhysAddr,
        /// What the guest tried to do there.
        access: Access,
    },
    /// A trapped memory access whose size, register or direction the hardware did not report and
    /// the backend could not decode (aarch64: a data abort with ESR_EL2.ISV = 0).
    UndecodedAccess {
        /// The address accessed.
        gpa: GuestPhysAddr,
    },
    /// A power-management call (aarch64: PSCI over HVC or SMC).
    Power(PowerRequest),
    /// An interrupt for vCPUs of the partition (aarch64: a write of ICC_SGI1R_EL1).
    SendSgi(SgiRequest),
    /// A privileged instruction the partition may not execute (VMX instructions, ...).
    Forbidden {
        /// The backend's code for the instruction (x86: the VM-exit reason).
        code: u32,
    },
    /// The vCPU cannot continue by the architecture's own rules.
    Shutdown {
        /// What happened.
        cause: ShutdownCause,
    },
    /// An architectural exit this core has no policy for.
    Unhandled {
        /// The backend's exit code (x86: basic exit reason; aarch64: ESR_EL2.EC).
        code: u32,
        /// The backend's detail (x86: exit qualification; aarch64: the whole ESR_EL2).
        qualification: u64,
    },

    // Asynchronous: not tied to a guest instruction.
    /// A physical interrupt arrived while the guest ran.
    ExternalInterrupt {
        /// The physical vector (x86) or interrupt ID (aarch64).
        vector: u32,
    },
    /// The backend's timer for the vCPU's next virtual timer deadline fired.
    TimerExpired,
    /// The guest can now take the interrupt that was waiting for it.
    InterruptWindow,
}

/// Whether an exit happens at the same point in every execution of the same guest with the same
/// inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// Caused by the instruction at the guest's PC: replay reaches it by itself.
    Deterministic,
    /// Caused by something outside the guest: replay must be told where it happened.
    Asynchronous,
}

impl Exit {
    /// Classifies the exit. Every variant is named: a new exit must be classified here before
    /// anything compiles, because a misclassified asynchronous exit would break replay silently.
    pub fn kind(&self) -> ExitKind {
        match self {
            Exit::PortRead { .. }
            | Exit::PortWrite { .. }
            | Exit::MmioRead { .. }
            | Exit::MmioWrite { .. }
            | Exit::Cpuid { .. }
            | Exit::MsrRead { .. }
            | Exit::MsrWrite { .. }
            | Exit::Hypercall { .. }
            | Exit::CounterRead
            | Exit::Halt
            | Exit::Pause
            | Exit::PageFault { .. }
            | Exit::UndecodedAccess { .. }
            | Exit::Power(_)
            | Exit::SendSgi(_)
            | Exit::Forbidden { .. }
            | Exit::Shutdown { .. }
            | Exit::Unhandled { .. } => ExitKind::Deterministic,
            Exit::ExternalInterrupt { .. } | Exit::TimerExpired | Exit::InterruptWindow => {
                ExitKind::Asynchronous
            }
        }
    }
}

impl Exit {
    /// Whether handling the exit may read the partition's time or complete a console line: a
    /// hypercall, a counter read, or a write that may reach a UART.
    pub fn carries_io(&self) -> bool {
        matches!(
            self,
            Exit::Hypercall { .. }
                | Exit::CounterRead
                | Exit::PortWrite { .. }
                | Exit::MmioWrite { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instruction_exits_are_deterministic_and_interrupts_are_not() {
        assert_eq!(Exit::Halt.kind(), ExitKind::Deterministic);
        let cpuid = Exit::Cpuid {
            leaf: 0,
            subleaf: 0,
            host: [0; 4],
        };
        assert_eq!(cpuid.kind(), ExitKind::Deterministic);
        assert_eq!(Exit::TimerExpired.kind(), ExitKind::Asynchronous);
        assert_eq!(
            Exit::ExternalInterrupt { vector: 32 }.kind(),
            ExitKind::Asynchronous
        );
    }
}
