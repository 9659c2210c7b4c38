//! Basic exit reasons (SDM Vol. 3D, Appendix C) decoded into the portable exit enum. EPT
//! violations are only classified here: the vCPU turns them into MMIO or page-fault exits itself,
//! because that needs the guest's memory (see `VmxVcpu::ept_violation`).

use tandem_core::exit::{Access, Exit, ShutdownCause};

use super::fields::ro;
use super::reasons::ExitReason;
use super::regs::GuestRegs;
use super::vmcs;
use crate::io::cpuid;

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

/// The portable meaning of the exit that just happened.
pub fn decode(reason: ExitReason, regs: &GuestRegs) -> Exit {
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
                host: cpuid(leaf, subleaf),
            }
        }
        ExitReason::HLT => Exit::Halt,
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
        | ExitReason::XSETBV => {
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
