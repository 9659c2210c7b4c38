//! The board's image area: RAM that holds guest images carried beside the hypervisor's own
//! image, read once at boot. The boot path fills it (on QEMU `virt`, its generic loader), or the
//! hypervisor does first thing, from the boot module a PC's boot loader placed where it chose
//! ([`gather`]).

use tandem_core::beside::{self, Module, ModuleError, Move};
use tandem_core::config::{PhysRange, System};

/// The `len` bytes at `offset` into the image area `area`, if they lie inside it and it is RAM
/// apart from the hypervisor's range `hypervisor` (as the validated configuration makes it).
pub fn area(
    area: &PhysRange,
    hypervisor: &PhysRange,
    offset: u64,
    len: u64,
) -> Option<&'static [u8]> {
    let end = offset.checked_add(len)?;
    if end > area.size || area.overlaps(hypervisor) {
        return None;
    }
    let start = area.base.raw().checked_add(offset)?;
    let len = usize::try_from(len).ok()?;
    // SAFETY: the range lies inside the board's image area (checked above), which validation
    // keeps inside RAM (identity-mapped by both backends) and apart from the hypervisor and
    // every partition: nothing writes it after the boot path (or `gather`) filled it, so a
    // shared slice of it stays valid for the whole run.
    Some(unsafe { core::slice::from_raw_parts(start as *const u8, len) })
}

/// Moves the images module the boot loader described (`None`: it passed none) to the base of
/// the board's image area, once [`beside::check`] found it in RAM, clear of the hypervisor's
/// loaded `image` and the right size; returns what moved (`None` when no image travels beside
/// the hypervisor). Each image's CRC is checked when it is read ([`area`], from bring-up).
///
/// # Safety
/// Called once, on the bootstrap CPU, before anything has used memory outside the
/// hypervisor's image since the boot loader handed over (the frame pool, the ledger and the
/// partitions come later) and after everything else the loader passed has been read and copied:
/// the module may lie anywhere in RAM, and its new place over the loader's own data.
pub unsafe fn gather(
    sys: &System,
    module: Option<Module>,
    image: &PhysRange,
) -> Result<Option<Move>, ModuleError> {
    let moved = beside::check(sys, module, image)?;
    if let Some(Move { from, to, len }) = moved
        && from != to
    {
        // SAFETY: both ranges lie in the board's RAM, identity-mapped by both backends: the
        // source as `check` found it, the destination the validated image area (apart from the
        // hypervisor and every partition). Neither is the hypervisor's image, and by the
        // caller's contract nothing else uses either yet; `copy` allows the two to overlap.
        // Both backends are 64-bit, so the length fits a `usize`.
        unsafe { core::ptr::copy(from as *const u8, to as *mut u8, len as usize) };
    }
    Ok(moved)
}
