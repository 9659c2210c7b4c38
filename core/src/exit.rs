//! The portable exit enum every backend returns from [`crate::vcpu::Vcpu::run`].
//!
//! Exits caused by a guest instruction happen at the same point in every execution of the same
//! guest with the same inputs; interrupts and timer expiry do not. Fault-tolerant replay and the
//! microreboot commit rule both rest on that difference, so it is part of the type.

use crate::addr::GuestPhysAddr;
use crate::power::PowerRequest;

/// The kind of a guest memory access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Access {
    Read,
    Write,
    Execute,
}

/// Why a partition's CPU shut itself down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ShutdownCause {
    /// x86 triple fault: an exception while delivering a double fault.
    TripleFault,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    // Deterministic: caused by the guest instruction at the current PC.
    PortRead {
        port: u16,
        size: u8,
    },
    PortWrite {
        port: u16,
        size: u8,
        value: u32,
    },
    MmioRead {
        gpa: GuestPhysAddr,
        size: u8,
    },
    MmioWrite {
        gpa: GuestPhysAddr,
        size: u8,
        value: u64,
    },
    /// CPUID, with what the physical CPU answered so the core can filter it.
    Cpuid {
        leaf: u32,
        subleaf: u32,
        host: [u32; 4],
    },
    MsrRead {
        msr: u32,
    },
    MsrWrite {
        msr: u32,
        value: u64,
    },
    Hypercall {
        nr: u64,
        args: [u64; 4],
    },
    /// HLT / WFI: the vCPU has nothing to do until its next interrupt.
    Halt,
    /// A guest-physical access no memory region or device backs.
    PageFault {
        gpa: GuestPhysAddr,
        access: Access,
    },
    /// A trapped memory access whose size, register or direction the hardware did not report and
    /// the backend could not decode (aarch64: a data abort with ESR_EL2.ISV = 0).
    UndecodedAccess {
        gpa: GuestPhysAddr,
    },
    /// A power-management call (aarch64: PSCI over HVC or SMC).
    Power(PowerRequest),
    /// A privileged instruction the partition may not execute (VMX instructions, ...).
    Forbidden {
        code: u32,
    },
    Shutdown {
        cause: ShutdownCause,
    },
    /// An architectural exit this core has no policy for.
    Unhandled {
        code: u32,
        qualification: u64,
    },

    // Asynchronous: not tied to a guest instruction.
    ExternalInterrupt {
        vector: u32,
    },
    /// The backend's timer for the vCPU's next virtual timer deadline fired.
    TimerExpired,
    /// The guest can now take the interrupt that was waiting for it.
    InterruptWindow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    Deterministic,
    Asynchronous,
}

impl Exit {
    pub fn kind(&self) -> ExitKind {
        match self {
            Exit::ExternalInterrupt { .. } | Exit::TimerExpired | Exit::InterruptWindow => {
                ExitKind::Asynchronous
            }
            _ => ExitKind::Deterministic,
        }
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
