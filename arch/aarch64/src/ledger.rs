//! The ledger: per-vCPU state kept in a fixed region at the top of the hypervisor's memory, which
//! no boot path clears (it is outside the image and its `.bss`). Plain `#[repr(C)]` data only.

use core::mem::size_of;

use tandem_core::config::{MAX_CPUS, PAGE_SIZE};
use tandem_core::partition::VcpuRecord;
use tandem_recovery::ledger::Header;

use crate::entry::GuestRegs;
use crate::vgic::VgicState;

#[repr(C)]
pub struct VcpuSlot {
    pub regs: GuestRegs,
    pub vgic: VgicState,
    pub record: VcpuRecord,
}

#[repr(C)]
pub struct Ledger {
    header: Header,
    slots: [VcpuSlot; MAX_CPUS],
}

/// Bytes the ledger occupies, rounded up to whole pages.
pub const SIZE: u64 = (size_of::<Ledger>() as u64).next_multiple_of(PAGE_SIZE);

/// Formats the ledger at `base` for a cold boot.
///
/// # Safety
/// `base` is the ledger region: page-aligned, identity-mapped, `SIZE` bytes of hypervisor memory
/// nothing else uses, and no CPU holds a slot yet.
pub unsafe fn format(base: u64) {
    let ledger = base as *mut Ledger;
    // SAFETY: the caller's contract; every field is plain data for which zero is valid.
    unsafe {
        core::ptr::write_bytes(ledger as *mut u8, 0, size_of::<Ledger>());
        (*ledger).header = Header::formatted(MAX_CPUS as u32, size_of::<VcpuSlot>() as u32);
    }
}

/// The slot of CPU `cpu` in the ledger at `base`.
///
/// # Safety
/// The ledger at `base` was formatted, and only CPU `cpu` calls this, once, so the returned
/// reference is the only one to that slot.
pub unsafe fn slot(base: u64, cpu: usize) -> &'static mut VcpuSlot {
    let ledger = base as *mut Ledger;
    // SAFETY: the caller's contract; the ledger lives for the whole run.
    unsafe { &mut (*ledger).slots[cpu] }
}
