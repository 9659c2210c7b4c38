//! Extended page tables: the EPT entry format (SDM Vol. 3C 29.3.2, Tables 29-1 to 29-6) for the
//! portable builder in `tandem_core::paging`, and the tables of a partition, built from its
//! memory regions and nothing else, so hypervisor memory and other partitions are unreachable.

use tandem_core::addr::HostPhysAddr;
use tandem_core::config::MemoryRegion;
use tandem_core::paging::{Attrs, EntryFormat, MemKind, Perms};

use super::vmcs;
use tandem_hw::dirty::Tracked;
use tandem_hw::frames::OutOfFrames;
use tandem_hw::tables;

/// Bits 2:0: read, write, and execute (supervisor-mode execute when mode-based execute control
/// is off, as here). An entry with all three clear is not present (29.3.2).
const READ: u64 = 1 << 0;
const WRITE: u64 = 1 << 1;
const EXECUTE: u64 = 1 << 2;
/// Bits 5:3 of a leaf: the EPT memory type (29.3.7.2): 0 uncacheable, 6 write-back.
const MEMTYPE_SHIFT: u32 = 3;
const MEMTYPE_MASK: u64 = 7 << MEMTYPE_SHIFT;
const MEMTYPE_UC: u64 = 0;
const MEMTYPE_WB: u64 = 6;
/// Bit 7 of a PDPTE / PDE: it maps a 1 GiB / 2 MiB page instead of pointing to a table.
const LARGE: u64 = 1 << 7;
/// Bits 51:12: the physical address of the next table or the page.
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// The EPT root's address in an EPTP (bits 51:12).
pub const ROOT_MASK: u64 = ADDR_MASK;
/// EPTP (SDM Vol. 3C 25.6.11): bits 2:0 memory type of the walk (write-back), bits 5:3 the walk
/// length minus one (four levels).
const EPTP_WB: u64 = 6;
const EPTP_WALK_4: u64 = 3 << 3;

/// The EPT entry format: PML4 (level 3), PDPT, PD, PT (level 0).
pub struct Ept;

impl EntryFormat for Ept {
    const LEVELS: usize = 4;
    const OUTPUT_BITS: u32 = 52;

    /// 2 MiB pages only: 1 GiB pages need IA32_VMX_EPT_VPID_CAP bit 17, which is not checked.
    fn block_allowed(level: usize) -> bool {
        level == 1
    }

    /// Write without read is a misconfiguration (29.3.3.1); execute-only needs
    /// IA32_VMX_EPT_VPID_CAP bit 0, which is not checked. So every leaf is readable.
    fn encodable(attrs: Attrs) -> bool {
        attrs.perms.read
    }

    /// Tables grant everything: the leaves alone restrict access (29.3.3.2 combines the
    /// permissions of every level).
    fn table(next: HostPhysAddr) -> u64 {
        next.raw() | READ | WRITE | EXECUTE
    }

    fn leaf(level: usize, hpa: HostPhysAddr, attrs: Attrs) -> u64 {
        let p = attrs.perms;
        let memtype = match attrs.kind {
            MemKind::Normal => MEMTYPE_WB,
            MemKind::Device => MEMTYPE_UC,
        };
        hpa.raw()
            | if p.read { READ } else { 0 }
            | if p.write { WRITE } else { 0 }
            | if p.execute { EXECUTE } else { 0 }
            | memtype << MEMTYPE_SHIFT
            | if level > 0 { LARGE } else { 0 }
    }

    fn is_valid(entry: u64) -> bool {
        entry & (READ | WRITE | EXECUTE) != 0
    }

    /// Bit 7 is reserved in a PML4E and never set there.
    fn is_table(entry: u64, level: usize) -> bool {
        level > 0 && entry & LARGE == 0
    }

    fn address(entry: u64) -> HostPhysAddr {
        HostPhysAddr::new(entry & ADDR_MASK)
    }

    fn attrs(entry: u64) -> Attrs {
        Attrs {
            perms: Perms {
                read: entry & READ != 0,
                write: entry & WRITE != 0,
                execute: entry & EXECUTE != 0,
            },
            kind: if entry & MEMTYPE_MASK == MEMTYPE_WB << MEMTYPE_SHIFT {
                MemKind::Normal
            } else {
                MemKind::Device
            },
        }
    }
}

impl Tracked for Ept {
    /// INVEPT all-context: this CPU runs one partition, so that is the partition's alone.
    fn flush_guest_tlb() {
        vmcs::invept_all();
    }
}

/// Builds the tables and returns the EPT pointer (root | 4-level walk | write-back).
pub fn build(regions: &[MemoryRegion]) -> Result<u64, OutOfFrames> {
    let root = tables::build::<Ept>(regions, &[])?;
    Ok(root.raw() | EPTP_WALK_4 | EPTP_WB)
}
