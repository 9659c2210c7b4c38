//! The board's image area: RAM the boot path fills with guest images carried beside the
//! hypervisor's own image (on QEMU `virt`, its generic loader), read once at boot.

use tandem_core::config::PhysRange;

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
    // every partition: nothing writes it after the boot path filled it, so a shared slice of it
    // stays valid for the whole run.
    Some(unsafe { core::slice::from_raw_parts(start as *const u8, len) })
}
