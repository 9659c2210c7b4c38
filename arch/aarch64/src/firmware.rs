//! What the firmware hands over besides the CPU. QEMU `virt` writes its device tree at the base of
//! RAM for a bare-metal `-kernel` image (X0 is 0), with `-append` as `/chosen/bootargs`; the
//! board files keep that gap below the hypervisor's image free.

use tandem_core::config::Board;
use tandem_core::fdt::{FdtError, FdtReader};

/// The boot command line, or "" when the machine's tree has none; a tree that is not valid is
/// reported and read as one without a command line.
pub fn boot_args(board: &Board) -> &'static str {
    let base = board.ram.base.raw();
    let room = board.hypervisor.base.raw().saturating_sub(base) as usize;
    if room == 0 {
        return "";
    }
    // SAFETY: [RAM base, hypervisor image) is RAM the boot map covers as Normal memory
    // (`boot.rs`) and that neither the hypervisor nor any partition is given (the board's
    // hypervisor range starts above it, partition memory above the image); nothing writes it
    // after the firmware, so the bytes stay as they are for the whole run.
    let gap = unsafe { core::slice::from_raw_parts(base as *const u8, room) };
    match FdtReader::new(gap) {
        Ok(tree) => tree.property_str("/chosen", "bootargs").unwrap_or(""),
        Err(FdtError::BadMagic { .. }) => "",
        Err(e) => {
            defmt::warn!(
                "the machine's device tree at {=u64:#x} is not valid ({}): no boot command line",
                base,
                e
            );
            ""
        }
    }
}
