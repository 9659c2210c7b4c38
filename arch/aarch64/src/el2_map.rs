//! Refining the EL2 identity map `boot` made of 1 GiB blocks: a range mapped read-only with
//! 4 KiB pages (the recovery's pristine image copy, recovery.md 6.0 rule 3), the rest of its
//! block mapped as before through a level-2 table of 2 MiB blocks and level-3 tables of pages
//! (Arm ARM D8.3, VMSAv8-64 descriptors, 4 KiB granule).

use tandem_hw::frames::{self, OutOfFrames};

use crate::boot;

const GIB: u64 = 1 << 30;
const MIB2: u64 = 1 << 21;
const PAGE: u64 = 1 << 12;
/// Descriptor types: a block (levels 1 and 2), a table (levels 1 and 2) or a page (level 3).
const BLOCK: u64 = 0b01;
const TABLE_OR_PAGE: u64 = 0b11;
/// The output-address bits of a descriptor.
const ADDRESS: u64 = 0x0000_ffff_ffff_f000;
/// AP[2]: read-only at EL2 (Arm ARM D8.4.1, stage 1 data access permissions).
const READ_ONLY: u64 = 1 << 7;

/// Maps `[start, start + len)` read-only, 4 KiB at a time, inside one 1 GiB block of RAM. The
/// bootstrap CPU only, before the others start (they take the refined map at their boot).
pub fn map_read_only(start: u64, len: u64) -> Result<(), OutOfFrames> {
    let index = start / GIB;
    if (start + len - 1) / GIB != index || index >= 4 {
        // `boot` maps 4 GiB; the frames the copy came from lie in one block of RAM.
        return Ok(());
    }
    let entry_at = (boot::l1_table() + index * 8) as *mut u64;
    // SAFETY: an entry of the level-1 table, identity-mapped.
    let entry = unsafe { entry_at.read_volatile() };
    if entry & 0b11 != BLOCK {
        return Ok(());
    }
    let attributes = entry & !ADDRESS & !0b11;
    let base = index * GIB;
    let level2 = frames::alloc()?.raw();
    for i in 0..512 {
        let at = base + i * MIB2;
        let descriptor = if at + MIB2 <= start || at >= start + len {
            at | attributes | BLOCK
        } else {
            level3(at, attributes, start, start + len)? | TABLE_OR_PAGE
        };
        // SAFETY: `level2` is a fresh frame, identity-mapped; nothing walks it yet.
        unsafe {
            (level2 as *mut u64)
                .add(i as usize)
                .write_volatile(descriptor)
        };
    }
    replace_block(entry_at, level2 | TABLE_OR_PAGE);
    Ok(())
}

/// A level-3 table for the 2 MiB at `at`: its pages as `attributes` say, those in
/// `[from, to)` read-only.
fn level3(at: u64, attributes: u64, from: u64, to: u64) -> Result<u64, OutOfFrames> {
    let table = frames::alloc()?.raw();
    for i in 0..512 {
        let page = at + i * PAGE;
        let read_only = if (from..to).contains(&page) {
            READ_ONLY
        } else {
            0
        };
        // SAFETY: `table` is a fresh frame, identity-mapped; nothing walks it yet.
        unsafe {
            (table as *mut u64)
                .add(i as usize)
                .write_volatile(page | attributes | read_only | TABLE_OR_PAGE)
        };
    }
    Ok(table)
}

/// Swaps the live level-1 block descriptor at `entry` for `table`, which maps the same
/// addresses with smaller blocks and pages. A change of block size needs break-before-make
/// (Arm ARM D8.16.1) and the block maps the code doing it, so the swap happens with the MMU
/// off: the line is cleaned and invalidated first (the store goes to memory, uncached), the
/// store made, the line invalidated again so the walker reads memory, and EL2's TLB entries
/// invalidated before the MMU is back on. Interrupts are masked meanwhile.
fn replace_block(entry: *mut u64, table: u64) {
    // SAFETY: `entry` is the level-1 entry of the map this CPU runs on, and `table` maps what
    // the block did with the same attributes (save the read-only range, which nothing writes
    // but an injection); the window with the MMU off runs only these instructions, from the
    // identity-mapped code, and touches no stack.
    unsafe {
        core::arch::asm!(
            "mrs {daif}, daif",
            "msr daifset, #0xf",
            "dc civac, {entry}",
            "dsb sy",
            "mrs {sctlr}, sctlr_el2",
            "bic {off}, {sctlr}, #1",
            "msr sctlr_el2, {off}",
            "isb",
            "str {table}, [{entry}]",
            "dsb sy",
            "dc ivac, {entry}",
            "dsb sy",
            "tlbi alle2",
            "dsb sy",
            "msr sctlr_el2, {sctlr}",
            "isb",
            "msr daif, {daif}",
            entry = in(reg) entry,
            table = in(reg) table,
            daif = out(reg) _,
            sctlr = out(reg) _,
            off = out(reg) _,
            options(nostack)
        )
    }
}

/// Runs `f` with the 4 KiB page holding `addr`, which [`map_read_only`] protected, writable:
/// for the injection that stands for a write the map cannot stop (a device's DMA, a flip in the
/// memory itself). A change of permissions alone needs no break-before-make; the page's TLB
/// entries are invalidated after each change (Arm ARM D8.16).
pub fn with_writable(addr: u64, f: impl FnOnce()) {
    let Some(descriptor) = page_descriptor(addr) else {
        return f();
    };
    let set = |value: u64| {
        // SAFETY: the level-3 descriptor of `addr`'s page, identity-mapped, changed only in
        // its AP[2] bit; the TLBI makes every CPU see the change.
        unsafe {
            descriptor.write_volatile(value);
            core::arch::asm!(
                "dsb ishst",
                "tlbi vae2is, {page}",
                "dsb ish",
                "isb",
                page = in(reg) addr >> 12,
                options(nostack)
            )
        }
    };
    // SAFETY: as above.
    let old = unsafe { descriptor.read_volatile() };
    set(old & !READ_ONLY);
    f();
    set(old);
}

/// The level-3 descriptor that maps `addr`, if a table of pages maps it.
fn page_descriptor(addr: u64) -> Option<*mut u64> {
    let mut table = boot::l1_table();
    for shift in [30, 21] {
        // SAFETY: an entry of a table of the EL2 map, identity-mapped.
        let entry =
            unsafe { ((table + ((addr >> shift) & 511) * 8) as *const u64).read_volatile() };
        if entry & 0b11 != TABLE_OR_PAGE {
            return None;
        }
        table = entry & ADDRESS;
    }
    Some((table + ((addr >> 12) & 511) * 8) as *mut u64)
}
