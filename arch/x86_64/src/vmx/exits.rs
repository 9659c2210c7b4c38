//! Basic exit reasons (SDM Vol. 3D, Appendix C) decoded into the portable exit enum.

use tandem_core::addr::GuestPhysAddr;
use tandem_core::exit::{Access, Exit, ShutdownCause};

use super::GuestRegs;
use super::vmcs::{self, ro};
use crate::io::cpuid;

pub const EXCEPTION_OR_NMI: u32 = 0;
pub const EXTERNAL_INTERRUPT: u32 = 1;
pub const TRIPLE_FAULT: u32 = 2;
pub const INTERRUPT_WINDOW: u32 = 7;
pub const CPUID: u32 = 10;
pub const GETSEC: u32 = 11;
pub const HLT: u32 = 12;
pub const INVD: u32 = 13;
pub const VMCALL: u32 = 18;
pub const VMCLEAR: u32 = 19;
pub const VMXON: u32 = 27;
pub const IO: u32 = 30;
pub const RDMSR: u32 = 31;
pub const WRMSR: u32 = 32;
pub const EPT_VIOLATION: u32 = 48;
pub const INVEPT: u32 = 50;
pub const PREEMPTION_TIMER: u32 = 52;
pub const INVVPID: u32 = 53;
pub const XSETBV: u32 = 55;

/// The portable meaning of the exit that just happened.
pub fn decode(reason: u32, regs: &GuestRegs) -> Exit {
    let qualification = vmcs::read(ro::EXIT_QUALIFICATION);
    match reason {
        EXCEPTION_OR_NMI => Exit::ExternalInterrupt { vector: 2 },
        EXTERNAL_INTERRUPT => Exit::ExternalInterrupt { vector: 0 },
        TRIPLE_FAULT => Exit::Shutdown {
            cause: ShutdownCause::TripleFault,
        },
        INTERRUPT_WINDOW => Exit::InterruptWindow,
        PREEMPTION_TIMER => Exit::TimerExpired,
        CPUID => {
            let (leaf, subleaf) = (regs.rax as u32, regs.rcx as u32);
            Exit::Cpuid {
                leaf,
                subleaf,
                host: cpuid(leaf, subleaf),
            }
        }
        HLT => Exit::Halt,
        VMCALL => Exit::Hypercall {
            nr: regs.rax,
            args: [regs.rdi, regs.rsi, regs.rdx, regs.r10],
        },
        GETSEC | INVD | VMCLEAR..=VMXON | INVEPT | INVVPID | XSETBV => {
            Exit::Forbidden { code: reason }
        }
        IO => decode_io(qualification, regs).unwrap_or(Exit::Unhandled {
            code: reason,
            qualification,
        }),
        RDMSR => Exit::MsrRead {
            msr: regs.rcx as u32,
        },
        WRMSR => Exit::MsrWrite {
            msr: regs.rcx as u32,
            value: (regs.rdx << 32) | (regs.rax & 0xffff_ffff),
        },
        EPT_VIOLATION => Exit::PageFault {
            gpa: GuestPhysAddr::new(vmcs::read(ro::GUEST_PHYSICAL_ADDRESS)),
            access: ept_access(qualification),
        },
        _ => Exit::Unhandled {
            code: reason,
            qualification,
        },
    }
}

/// The access an EPT violation reports: qualification bit 1 write, bit 2 instruction fetch
/// (SDM Vol. 3C, Table 29-7).
pub fn ept_access(qualification: u64) -> Access {
    if qualification & 0b010 != 0 {
        Access::Write
    } else if qualification & 0b100 != 0 {
        Access::Execute
    } else {
        Access::Read
    }
}

/// IN/OUT with an immediate or DX port; string forms (INS/OUTS) are not emulated.
fn decode_io(q: u64, regs: &GuestRegs) -> Option<Exit> {
    let size = ((q & 7) + 1) as u8;
    let input = q & (1 << 3) != 0;
    let string = q & (1 << 4) != 0;
    let port = (q >> 16) as u16;
    if string {
        return None;
    }
    Some(if input {
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
