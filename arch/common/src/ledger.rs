//! Placing the ledger: per-CPU slots of plain `#[repr(C)]` data behind the recovery crate's
//! header, in a fixed region at the top of the hypervisor's memory that no boot path clears (it
//! is outside the image and its `.bss`). Each backend chooses its slot type.

use core::mem::size_of;

use tandem_core::config::{MAX_CPUS, PAGE_SIZE};
use tandem_recovery::ledger::Header;

#[repr(C)]
struct Ledger<S> {
    header: Header,
    slots: [S; MAX_CPUS],
}

/// Bytes a ledger of `S` slots occupies, rounded up to whole pages.
pub const fn size<S>() -> u64 {
    (size_of::<Ledger<S>>() as u64).next_multiple_of(PAGE_SIZE)
}

/// Formats the ledger at `base` for a cold boot.
///
/// # Safety
/// `base` is the ledger region: page-aligned, identity-mapped, [`size::<S>`] bytes of hypervisor
/// memory nothing else uses; no CPU holds a slot yet; `S` is plain data for which all-zero
/// bytes are a valid value.
pub unsafe fn format<S>(base: u64) {
    let ledger = base as *mut Ledger<S>;
    // SAFETY: the caller's contract.
    unsafe {
        core::ptr::write_bytes(ledger as *mut u8, 0, size_of::<Ledger<S>>());
        (*ledger).header = Header::formatted(MAX_CPUS as u32, size_of::<S>() as u32);
    }
}

/// The slot of CPU `cpu` in the ledger at `base`.
///
/// # Safety
/// The ledger at `base` was formatted with the same `S`, and only CPU `cpu` calls this, once,
/// so the returned reference is the only one to that slot.
pub unsafe fn slot<S>(base: u64, cpu: usize) -> &'static mut S {
    let ledger = base as *mut Ledger<S>;
    // SAFETY: the caller's contract; the ledger lives for the whole run.
    unsafe { &mut (*ledger).slots[cpu] }
}
