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
pub use snapshot::flip_field;
pub use vcpu::{PartitionTables, SetupError, SnapshotError, VcpuState, VmxVcpu};
pub use vmcs::VmFail;

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use fields::CapabilityMsr;
use tandem_core::config::{MAX_CPUS, PAGE_SIZE};
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
    IN_VMX[crate::apic::cpu_index()].store(false, Ordering::Relaxed);
}

/// The frames each CPU's VMX structures live in, allocated at the first bring-up and used again
/// by every recovery (whose VMCLEAR and VMXOFF released them), so recoveries leak nothing.
#[derive(Clone, Copy)]
pub(crate) enum CpuFrame {
    Vmxon,
    Vmcs,
    VirtualApic,
}

/// Which CPUs are in VMX operation (VMPTRST and VMCLEAR raise #UD outside it).
static IN_VMX: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

static CPU_FRAMES: [[AtomicU64; 3]; MAX_CPUS] =
    [const { [const { AtomicU64::new(0) }; 3] }; MAX_CPUS];

/// CPU `cpu`'s frame for `which`, zeroed.
pub(crate) fn cpu_frame(cpu: usize, which: CpuFrame) -> Result<u64, OutOfFrames> {
    let slot = &CPU_FRAMES[cpu][which as usize];
    match slot.load(Ordering::Relaxed) {
        0 => {
            let frame = frames::alloc()?.raw();
            slot.store(frame, Ordering::Relaxed);
            Ok(frame)
        }
        frame => {
            // SAFETY: the frame is this CPU's own, from the pool, and out of use: the recovery
            // that comes back for it cleared the VMCS and left VMX operation first.
            unsafe { core::ptr::write_bytes(frame as *mut u8, 0, PAGE_SIZE as usize) };
            Ok(frame)
        }
    }
}

/// For a recovery: saves the guest state of the VMCS current on this CPU, if there is one, into
/// `state` (the vCPU's ledger slot), then clears that VMCS and leaves VMX operation (recovery.md
/// 6.3: VMCLEAR flushes the on-chip copy; the CPU then starts over with VMXON). False if the
/// CPU had no current VMCS.
pub fn capture_current(cpu: usize, state: &mut VcpuState) -> bool {
    if !IN_VMX[cpu].load(Ordering::Relaxed) {
        return false;
    }
    let Some(current) = vmcs::current() else {
        disable();
        return false;
    };
    let captured = state.capture_for_recovery().is_ok();
    // SAFETY: `current` is this CPU's current VMCS; clearing it only writes it back to memory.
    let _ = unsafe { vmcs::vmclear(current) };
    disable();
    captured
}

/// Puts this CPU in VMX root operation (SDM Vol. 3C, 25.7 and A.7-A.8).
pub fn enable(caps: &Caps, cpu: usize) -> Result<(), EnableError> {
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
    let region = cpu_frame(cpu, CpuFrame::Vmxon)?;
    // SAFETY: `region` is a fresh frame; the revision identifier goes in its first 4 bytes.
    unsafe {
        (region as *mut u32).write(caps.revision);
        vmcs::vmxon(region).map_err(EnableError::Vmxon)?;
    }
    IN_VMX[cpu].store(true, Ordering::Relaxed);
    vmcs::invept_all();
    vmcs::invvpid_all();
    Ok(())
}
