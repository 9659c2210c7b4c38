//! What the firmware hands over besides the CPU. QEMU `virt` writes its device tree at the base of
//! RAM for a bare-metal `-kernel` image (X0 is 0), with `-append` as `/chosen/bootargs`; the
//! board files keep that gap below the hypervisor's image free.

use tandem_core::config::Board;
use tandem_core::fdt::cpus::{self, CpuStart};
use tandem_core::fdt::facts::{self, Disagreement};
use tandem_core::fdt::{FdtError, FdtReader};

/// The machine's device tree, if the firmware left a valid one; a tree that is not valid is
/// reported and read as none.
fn machine_tree(board: &Board) -> Option<FdtReader<'static>> {
    let base = board.ram.base.raw();
    let room = board.hypervisor.base.raw().saturating_sub(base) as usize;
    if room == 0 {
        return None;
    }
    // SAFETY: [RAM base, hypervisor image) is RAM the boot map covers as Normal memory
    // (`boot.rs`) and that neither the hypervisor nor any partition is given (the board's
    // hypervisor range starts above it, partition memory above the image); nothing writes it
    // after the firmware, so the bytes stay as they are for the whole run.
    let gap = unsafe { core::slice::from_raw_parts(base as *const u8, room) };
    match FdtReader::new(gap) {
        Ok(tree) => Some(tree),
        Err(FdtError::BadMagic { .. }) => None,
        Err(e) => {
            defmt::warn!(
                "the machine's device tree at {=u64:#x} is not valid ({}): read as none",
                base,
                e
            );
            None
        }
    }
}

/// The boot command line, or "" when the machine's tree has none.
pub fn boot_args(board: &Board) -> &'static str {
    machine_tree(board)
        .and_then(|tree| tree.property_str("/chosen", "bootargs"))
        .unwrap_or("")
}

/// How the firmware lets CPU `cpu` start: PSCI unless its tree names a spin table.
pub fn cpu_start(board: &Board, cpu: usize) -> CpuStart {
    machine_tree(board).map_or(CpuStart::Psci, |tree| cpus::cpu_start(&tree, cpu as u64))
}

/// Checks the board file against the firmware's device tree, where there is one (a firmware
/// that passes none leaves the board file as the only description).
pub fn check_board(board: &Board) -> Result<(), Disagreement> {
    match machine_tree(board) {
        Some(tree) => facts::check(&tree, board),
        None => {
            defmt::warn!("no device tree from the firmware: the board file is not checked");
            Ok(())
        }
    }
}
