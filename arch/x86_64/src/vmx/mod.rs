//! VT-x: entering VMX operation on each CPU and running partitions' vCPUs.

mod bitmaps;
mod caps;
mod entry;
mod ept;
mod exits;
mod fields;
mod guest_paging;
mod reasons;
mod regs;
mod snapshot;
mod vcpu;
mod vmcs;

pub use caps::{Caps, probe};
pub use vcpu::{PartitionTables, SetupError, SnapshotError, VcpuState, VmxVcpu};
pub use vmcs::VmFail;

use fields::CapabilityMsr;
use tandem_hw::frames::{self, OutOfFrames};
use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};

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

/// Leaves VMX operation on this CPU (SDM Vol. 3C, 31.3): a core killed on purpose stops being a
/// hypervisor CPU, as if it had failed.
pub fn disable() {
    // SAFETY: VMXOFF only leaves VMX operation (failing harmlessly outside it); this CPU runs no
    // guest afterwards.
    unsafe { core::arch::asm!("vmxoff", options(nostack)) };
}

/// Puts this CPU in VMX root operation (SDM Vol. 3C, 25.7 and A.7-A.8).
pub fn enable(caps: &Caps) -> Result<(), EnableError> {
    // CR0.TS and CR0.EM clear and CR4.OSFXSR set, so FXSAVE and FXRSTOR move a guest's whole
    // x87/SSE state for a re-protection snapshot (SDM Vol. 1, 10.5.1; the hypervisor itself is
    // soft-float and uses none of it).
    let fpu = (Cr0Flags::TASK_SWITCHED | Cr0Flags::EMULATE_COPROCESSOR).bits();
    let cr0 = ((Cr0::read_raw() & !fpu) | CapabilityMsr::Cr0Fixed0.read())
        & CapabilityMsr::Cr0Fixed1.read();
    let cr4 = (Cr4::read_raw()
        | Cr4Flags::VIRTUAL_MACHINE_EXTENSIONS.bits()
        | Cr4Flags::OSFXSR.bits()
        | CapabilityMsr::Cr4Fixed0.read())
        & CapabilityMsr::Cr4Fixed1.read();
    // SAFETY: forcing the fixed bits keeps CR0/CR4 valid for VMX operation, and the
    // hypervisor's own paging and protection bits are among them.
    unsafe {
        Cr0::write_raw(cr0);
        Cr4::write_raw(cr4);
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
