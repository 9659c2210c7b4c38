//! Extended page tables built from a partition's memory regions and nothing else, so hypervisor
//! memory and other partitions are unreachable (SDM Vol. 3C, 30.3).

use tandem_core::config::MemoryRegion;

use tandem_hw::frames::{self, OutOfFrames};

const READ: u64 = 1 << 0;
const WRITE: u64 = 1 << 1;
const EXECUTE: u64 = 1 << 2;
/// Leaf memory type write-back (bits 5:3 = 6).
const MEMTYPE_WB: u64 = 6 << 3;
const LARGE: u64 = 1 << 7;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
const SIZE_2M: u64 = 1 << 21;
const SIZE_4K: u64 = 1 << 12;

fn table(phys: u64) -> *mut u64 {
    phys as *mut u64
}

/// The next-level table behind entry `index` of `parent`, created if absent.
fn next_level(parent: u64, index: usize) -> Result<u64, OutOfFrames> {
    // SAFETY: `parent` is an EPT table frame from `frames::alloc` (identity-mapped, owned by the
    // partition being built on this CPU) and `index` < 512.
    unsafe {
        let entry = table(parent).add(index);
        if *entry & READ == 0 {
            let child = frames::alloc()?.raw();
            *entry = child | READ | WRITE | EXECUTE;
        }
        Ok(*entry & ADDR_MASK)
    }
}

fn index(gpa: u64, level: u32) -> usize {
    ((gpa >> (12 + 9 * level)) & 0x1ff) as usize
}

/// Builds the tables and returns the EPT pointer (root | 4-level walk | write-back).
pub fn build(regions: &[MemoryRegion]) -> Result<u64, OutOfFrames> {
    let root = frames::alloc()?.raw();
    for r in regions {
        let perms = READ | WRITE | if r.executable { EXECUTE } else { 0 } | MEMTYPE_WB;
        let mut offset = 0;
        while offset < r.size {
            let gpa = r.gpa.raw() + offset;
            let hpa = r.hpa.raw() + offset;
            let pdpt = next_level(root, index(gpa, 3))?;
            let pd = next_level(pdpt, index(gpa, 2))?;
            let big = gpa % SIZE_2M == 0 && hpa % SIZE_2M == 0 && r.size - offset >= SIZE_2M;
            // SAFETY: `pd` / `pt` are table frames built above; indices are < 512.
            unsafe {
                if big {
                    *table(pd).add(index(gpa, 1)) = hpa | perms | LARGE;
                    offset += SIZE_2M;
                } else {
                    let pt = next_level(pd, index(gpa, 1))?;
                    *table(pt).add(index(gpa, 0)) = hpa | perms;
                    offset += SIZE_4K;
                }
            }
        }
    }
    Ok(root | 3 << 3 | 6)
}
