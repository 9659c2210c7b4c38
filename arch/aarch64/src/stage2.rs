//! Stage-2 translation tables of a partition, built from its memory regions only: every other
//! guest-physical address faults to EL2 (Arm ARM D8.3, VMSAv8-64 stage 2).
//!
//! 4 KiB granule, 39-bit IPA space (VTCR_EL2.T0SZ = 25) so walks start at level 1 (SL0 = 1);
//! 2 MiB blocks where both addresses and the remaining size allow, 4 KiB pages elsewhere.

use tandem_core::config::{MemoryRegion, PAGE_SIZE};

use tandem_hw::frames::{self, OutOfFrames};

/// VTCR_EL2 (Arm ARM D19.2.183): T0SZ = 25, SL0 = 1 (level 1), inner/outer write-back, inner
/// shareable, TG0 = 4 KiB, PS = 40 bits, RES1 bit 31.
pub const VTCR: u64 = 25 | 1 << 6 | 1 << 8 | 1 << 10 | 3 << 12 | 2 << 16 | 1 << 31;

const VALID: u64 = 1;
const TABLE_OR_PAGE: u64 = 1 << 1;
/// MemAttr = 0b1111 (Normal, outer and inner write-back), S2AP = read/write, inner shareable,
/// access flag set (Arm ARM D8.5.5).
const NORMAL_RW: u64 = 0b1111 << 2 | 0b11 << 6 | 0b11 << 8 | 1 << 10;
/// XN[1:0] = 0b10: not executable at EL1 or EL0.
const XN: u64 = 0b10 << 53;
const ADDRESS: u64 = 0x0000_ffff_ffff_f000;
const BLOCK_2M: u64 = 2 << 20;

fn entry_at(table: u64, index: u64) -> *mut u64 {
    (table + 8 * index) as *mut u64
}

/// The next-level table under `table[index]`, allocated on first use.
fn next_table(table: u64, index: u64) -> Result<u64, OutOfFrames> {
    let slot = entry_at(table, index);
    // SAFETY: `table` is a table frame this module allocated; `index` < 512.
    let entry = unsafe { slot.read() };
    if entry & VALID != 0 {
        return Ok(entry & ADDRESS);
    }
    let frame = frames::alloc()?.raw();
    // SAFETY: as above; the new table is zeroed (all invalid).
    unsafe { slot.write(frame | VALID | TABLE_OR_PAGE) };
    Ok(frame)
}

fn map(root: u64, gpa: u64, hpa: u64, size: u64, attrs: u64) -> Result<(), OutOfFrames> {
    let mut off = 0;
    while off < size {
        let (g, h) = (gpa + off, hpa + off);
        let l2 = next_table(root, (g >> 30) & 0x1ff)?;
        let l2_index = (g >> 21) & 0x1ff;
        if g % BLOCK_2M == 0 && h % BLOCK_2M == 0 && size - off >= BLOCK_2M {
            // SAFETY: `l2` is a table frame of this partition.
            unsafe { entry_at(l2, l2_index).write(h | attrs | VALID) };
            off += BLOCK_2M;
        } else {
            let l3 = next_table(l2, l2_index)?;
            // SAFETY: `l3` is a table frame of this partition.
            unsafe { entry_at(l3, (g >> 12) & 0x1ff).write(h | attrs | VALID | TABLE_OR_PAGE) };
            off += PAGE_SIZE;
        }
    }
    Ok(())
}

/// Builds the tables for `regions` and returns the level-1 table's address (for VTTBR_EL2).
pub fn build(regions: &[MemoryRegion]) -> Result<u64, OutOfFrames> {
    let root = frames::alloc()?.raw();
    for r in regions {
        let attrs = if r.executable {
            NORMAL_RW
        } else {
            NORMAL_RW | XN
        };
        map(root, r.gpa.raw(), r.hpa.raw(), r.size, attrs)?;
    }
    crate::sysreg::dsb_ish();
    Ok(root)
}
