//! Basic exit reasons (SDM Vol. 3D, Appendix C) decoded into the portable exit enum. EPT
//! violations are only classified here: the vCPU turns them into MMIO or page-fault exits itself,
//! because that needs the guest's memory (see `VmxVcpu::ept_violation`).

use tandem_core::exit::{Access, Exit, ShutdownCause};

use super::caps::Caps;
use super::fields::{ProcControls2, guest, ro};
use super::reasons::ExitReason;
use super::regs::GuestRegs;
use super::vmcs;
use crate::io::cpuid;

/// The time-stamp counter MSR, which a fault-tolerant partition reads through an exit.
const IA32_TSC: u32 = 0x10;

/// EPT-violation exit qualification bits (SDM Vol. 3C, Table 29-7).
const EPT_QUAL_WRITE: u64 = 1 << 1;
const EPT_QUAL_FETCH: u64 = 1 << 2;
/// Bit 7: the guest-linear-address field is valid; bit 8, when bit 7 is set: the access was to
/// the linear address's translation (1) or to a paging-structure entry on the way (0).
const EPT_QUAL_LINEAR_VALID: u64 = 1 << 7;
const EPT_QUAL_TRANSLATED: u64 = 1 << 8;
/// I/O-instruction exit qualification (SDM Vol. 3C, Table 29-5).
const IO_QUAL_SIZE: u64 = 0b111;
const IO_QUAL_IN: u64 = 1 << 3;
const IO_QUAL_STRING: u64 = 1 << 4;
const IO_QUAL_PORT_SHIFT: u32 = 16;

/// SS access rights bits 6:5: the DPL, which VT-x keeps equal to the CPL (SDM Vol. 3C, 25.4.1).
const SS_DPL_SHIFT: u32 = 5;

/// The guest's current privilege level.
pub fn guest_cpl() -> u64 {
    (vmcs::read(guest::SS_ACCESS) >> SS_DPL_SHIFT) & 3
}

/// The portable meaning of the exit that just happened; `proc2` says which instructions the
/// guest can run, so CPUID does not announce the others.
// On every exit: inlined into each instance of the exit loop (see `VmxVcpu::run`).
#[inline(always)]
pub fn decode(reason: ExitReason, regs: &GuestRegs, proc2: ProcControls2) -> Exit {
    let qualification = vmcs::read(ro::EXIT_QUALIFICATION);
    match reason {
        ExitReason::EXCEPTION_OR_NMI => Exit::ExternalInterrupt { vector: 2 },
        ExitReason::EXTERNAL_INTERRUPT => Exit::ExternalInterrupt { vector: 0 },
        ExitReason::TRIPLE_FAULT => Exit::Shutdown {
            cause: ShutdownCause::TripleFault,
        },
        ExitReason::INTERRUPT_WINDOW => Exit::InterruptWindow,
        ExitReason::PREEMPTION_TIMER => Exit::TimerExpired,
        ExitReason::CPUID => {
            let (leaf, subleaf) = (regs.rax as u32, regs.rcx as u32);
            Exit::Cpuid {
                leaf,
                subleaf,
                host: Caps::hide_unsupported(proc2, leaf, subleaf, cpuid(leaf, subleaf)),
            }
        }
        ExitReason::HLT => Exit::Halt,
        // Exits only for a fault-tolerant partition.
        ExitReason::PAUSE => Exit::Pause,
        // Hypercalls belong to the guest kernel: from user mode VMCALL is an instruction the
        // partition may not execute (#UD), never a call the core sees (as KVM and Xen refuse it).
        ExitReason::VMCALL if guest_cpl() != 0 => {
            log_user_hypercall(regs.rax);
            Exit::Forbidden {
                code: reason.0.into(),
            }
        }
        ExitReason::VMCALL => Exit::Hypercall {
            nr: regs.rax,
            args: [regs.rdi, regs.rsi, regs.rdx, regs.r10],
        },
        ExitReason::GETSEC
        | ExitReason::INVD
        | ExitReason::VMCLEAR
        | ExitReason::VMLAUNCH
        | ExitReason::VMPTRLD
        | ExitReason::VMPTRST
        | ExitReason::VMREAD
        | ExitReason::VMRESUME
        | ExitReason::VMWRITE
        | ExitReason::VMXOFF
        | ExitReason::VMXON
        | ExitReason::INVEPT
        | ExitReason::INVVPID
        | ExitReason::XSETBV
        // Exit only for a fault-tolerant partition, whose CPUID hides them: no log could give
        // both copies the same random number.
        | ExitReason::RDRAND
        | ExitReason::RDSEED => {
            log_forbidden(reason);
            Exit::Forbidden {
                code: reason.0.into(),
            }
        }
        ExitReason::IO_INSTRUCTION => decode_io(qualification, regs).unwrap_or_else(|| {
            log_unhandled(reason, qualification);
            Exit::Unhandled {
                code: reason.0.into(),
                qualification,
            }
        }),
        // Exits only for a fault-tolerant partition: the time its copies read comes from the log.
        ExitReason::RDTSC | ExitReason::RDTSCP => Exit::CounterRead,
        ExitReason::RDMSR if regs.rcx as u32 == IA32_TSC => Exit::CounterRead,
        ExitReason::RDMSR => Exit::MsrRead {
            msr: regs.rcx as u32,
        },
        ExitReason::WRMSR => Exit::MsrWrite {
            msr: regs.rcx as u32,
            value: (regs.rdx << 32) | (regs.rax & 0xffff_ffff),
        },
        _ => {
            log_unhandled(reason, qualification);
            Exit::Unhandled {
                code: reason.0.into(),
                qualification,
            }
        }
    }
}

// The core reports these exits by number; the log names them here, out of line.

#[cold]
fn log_forbidden(reason: ExitReason) {
    defmt::warn!("forbidden instruction: VM exit {}", reason);
}

#[cold]
fn log_user_hypercall(nr: u64) {
    defmt::warn!(
        "hypercall {=u64} from user mode (CPL 3) refused with #UD",
        nr
    );
}

#[cold]
fn log_unhandled(reason: ExitReason, qualification: u64) {
    defmt::warn!(
        "unhandled VM exit {} (qualification {=u64:#x})",
        reason,
        qualification
    );
}

/// The access an EPT violation reports.
pub fn ept_access(qualification: u64) -> Access {
    if qualification & EPT_QUAL_WRITE != 0 {
        Access::Write
    } else if qualification & EPT_QUAL_FETCH != 0 {
        Access::Execute
    } else {
        Access::Read
    }
}

/// Whether an EPT violation happened while the CPU walked the guest's own page tables.
pub fn ept_in_page_walk(qualification: u64) -> bool {
    qualification & (EPT_QUAL_LINEAR_VALID | EPT_QUAL_TRANSLATED) == EPT_QUAL_LINEAR_VALID
}

/// What a page walk did to the paging-structure entry: read it, or write its accessed or dirty
/// flag (reported as a data write).
pub fn ept_walk_access(qualification: u64) -> Access {
    if qualification & EPT_QUAL_WRITE != 0 {
        Access::Write
    } else {
        Access::Read
    }
}

/// IN/OUT with an immediate or DX port; string forms (INS/OUTS) are not emulated.
fn decode_io(q: u64, regs: &GuestRegs) -> Option<Exit> {
    let size = ((q & IO_QUAL_SIZE) + 1) as u8;
    let port = (q >> IO_QUAL_PORT_SHIFT) as u16;
    if q & IO_QUAL_STRING != 0 {
        return None;
    }
    Some(if q & IO_QUAL_IN != 0 {
        Exit::PortRead { port, size }
    } else {
        let mask = u32::MAX >> (32 - 8 * u32::from(size));
        Exit::PortWrite {
            port,
            size,
            value: regs.rax as u32 & mask,
        }
    })
}

/// Exceptions that exit instead of going through the guest's IDT: #DB and #AC, whose delivery a
/// guest can make fault forever with no instruction boundary in between, so that no interrupt
/// ever gets the CPU back (XSA-156, CVE-2015-5307 and CVE-2015-8104), and #MC, which belongs
/// to the hypervisor (SDM Vol. 3C, 26.6.3).
pub const DEBUG: u8 = 1;
pub const NMI: u8 = 2;
pub const ALIGNMENT_CHECK: u8 = 17;
pub const MACHINE_CHECK: u8 = 18;
pub const INTERCEPTED_EXCEPTIONS: u64 = 1 << DEBUG | 1 << ALIGNMENT_CHECK | 1 << MACHINE_CHECK;

/// VM-exit interruption information (SDM Vol. 3C, 28.2.2): vector, type, error code valid.
const INTR_VECTOR: u64 = 0xff;
const INTR_TYPE_SHIFT: u32 = 8;
const INTR_TYPE_MASK: u64 = 0b111;
const INTR_TYPE_NMI: u64 = 2;
const INTR_TYPE_HARDWARE_EXCEPTION: u64 = 3;
/// Types 4-6 (software interrupt, privileged and plain software exception) are injected with
/// the instruction's length (SDM Vol. 3C, 26.6.1.3; INT1 is type 5).
const INTR_TYPE_FIRST_SOFTWARE: u64 = 4;
const INTR_ERROR_VALID: u64 = 1 << 11;
/// Vector, type, error-code-valid and valid: the part of the exit information an injection
/// takes over unchanged (SDM Vol. 3C, 26.8.3); bit 12 and the reserved bits are not part of it.
const INTR_EVENT_BITS: u64 = 0x8000_0fff;

/// What an "exception or NMI" exit (basic reason 0) was, by its interruption information.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExceptionExit {
    /// An NMI arrived while the guest ran (NMI exiting): the hypervisor's, not the guest's.
    Nmi,
    /// A hardware machine check: the hypervisor's to report.
    MachineCheck,
    /// #DB or #AC to hand back to the guest as the same event.
    Reflect {
        vector: u8,
        /// Entry interruption information, error code and instruction length to inject it.
        event: (u64, u64, u64),
        /// A hardware #DB: its exit qualification holds the DR6 bits to report.
        debug_trap: bool,
    },
}

/// Decodes the interruption information of the exit that just happened.
pub fn exception() -> ExceptionExit {
    let info = vmcs::read(ro::EXIT_INTERRUPTION_INFO);
    let kind = (info >> INTR_TYPE_SHIFT) & INTR_TYPE_MASK;
    let vector = (info & INTR_VECTOR) as u8;
    if kind == INTR_TYPE_NMI {
        return ExceptionExit::Nmi;
    }
    let hardware = kind == INTR_TYPE_HARDWARE_EXCEPTION;
    if hardware && vector == MACHINE_CHECK {
        return ExceptionExit::MachineCheck;
    }
    let error = if info & INTR_ERROR_VALID != 0 {
        vmcs::read(ro::EXIT_INTERRUPTION_ERROR)
    } else {
        0
    };
    let len = if kind >= INTR_TYPE_FIRST_SOFTWARE {
        vmcs::read(ro::EXIT_INSTRUCTION_LEN)
    } else {
        0
    };
    ExceptionExit::Reflect {
        vector,
        event: (info & INTR_EVENT_BITS, error, len),
        debug_trap: hardware && vector == DEBUG,
    }
}

/// Whether `event` (entry interruption information) is hardware exception `vector`.
pub fn is_exception(event: u64, vector: u8) -> bool {
    event & (INTR_VECTOR | INTR_TYPE_MASK << INTR_TYPE_SHIFT)
        == u64::from(vector) | INTR_TYPE_HARDWARE_EXCEPTION << INTR_TYPE_SHIFT
}

/// Whether `event` is an external interrupt (type 0), and its vector.
pub fn external_interrupt(event: u64) -> Option<u8> {
    ((event >> INTR_TYPE_SHIFT) & INTR_TYPE_MASK == 0).then_some((event & INTR_VECTOR) as u8)
}
