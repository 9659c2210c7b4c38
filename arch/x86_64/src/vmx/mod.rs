//! VT-x: entering VMX operation on each CPU and running partitions' vCPUs.

mod bitmaps;
mod caps;
mod entry;
mod ept;
mod exits;
mod guest_paging;
mod vcpu;
mod vmcs;

pub use caps::{Caps, probe};
pub use vcpu::{PartitionTables, SetupError, VmxVcpu};
pub use vmcs::VmFail;

use crate::io::{rdmsr, read_cr0, read_cr4, write_cr0, write_cr4};
use tandem_hw::frames::{self, OutOfFrames};

/// A guest's general registers while it is not running. RSP and RIP live in the VMCS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct GuestRegs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}
// `entry.rs` addresses the fields by offset.
const _: () = assert!(core::mem::offset_of!(GuestRegs, rdi) == 0x28);
const _: () = assert!(core::mem::offset_of!(GuestRegs, r15) == 0x70);

#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum EnableError {
    OutOfFrames,
    Vmxon(VmFail),
}

impl From<OutOfFrames> for EnableError {
    fn from(_: OutOfFrames) -> Self {
        EnableError::OutOfFrames
    }
}

/// Puts this CPU in VMX root operation (SDM Vol. 3C, 25.7 and A.7-A.8).
pub fn enable(caps: &Caps) -> Result<(), EnableError> {
    const CR4_VMXE: u64 = 1 << 13;
    // SAFETY: the fixed-bit MSRs exist on VMX CPUs; forcing their bits keeps CR0/CR4 valid for
    // VMX operation, and the hypervisor's own paging and protection bits are among them.
    unsafe {
        let cr0 =
            (read_cr0() | rdmsr(caps::IA32_VMX_CR0_FIXED0)) & rdmsr(caps::IA32_VMX_CR0_FIXED1);
        write_cr0(cr0);
        let cr4 = (read_cr4() | CR4_VMXE | rdmsr(caps::IA32_VMX_CR4_FIXED0))
            & rdmsr(caps::IA32_VMX_CR4_FIXED1);
        write_cr4(cr4);
    }
    let region = frames::alloc()?.raw();
    // SAFETY: `region` is a fresh frame; the revision identifier goes in its first 4 bytes.
    unsafe {
        (region as *mut u32).write(caps.revision);
        vmcs::vmxon(region).map_err(EnableError::Vmxon)?;
    }
    vmcs::invept_all();
    vmcs::invvpid_all();
    Ok(())
}
