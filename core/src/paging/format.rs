//! What a second-stage table format tells the portable walker: its shape and how one entry is
//! encoded and decoded (Hafnium's `arch_mm_table_pte` / `arch_mm_block_pte` / `arch_mm_pte_*`).

use super::Attrs;
use crate::addr::HostPhysAddr;

/// One page-table entry format. Every entry is a `u64`; an all-zero entry must decode as not
/// valid, because table frames start zeroed. Leaves must round-trip: for a leaf `e` of `level`
/// that [`leaf`](Self::leaf) wrote, `leaf(level, address(e), attrs(e)) == e` (the walker
/// rewrites leaves from what it decodes).
pub trait EntryFormat {
    /// Levels of the walk, the root's included.
    const LEVELS: usize;
    /// log2 of the smallest page; level-0 entries map pages of this size.
    const PAGE_SHIFT: u32 = 12;
    /// log2 of the entries in one table (a table fills one `1 << PAGE_SHIFT` frame).
    const BITS_PER_LEVEL: u32 = 9;
    /// Output addresses must lie below `1 << OUTPUT_BITS`.
    const OUTPUT_BITS: u32;

    /// Whether an entry of `level` (1 or higher) may map a block instead of pointing to a table.
    /// Level 0 always maps pages.
    fn block_allowed(level: usize) -> bool;
    /// Whether leaves can carry `attrs`.
    fn encodable(attrs: Attrs) -> bool;

    /// An entry pointing to the next-level table at `next`.
    fn table(next: HostPhysAddr) -> u64;
    /// A leaf of `level` (a page at level 0, a block above) mapping `hpa`, aligned to the
    /// level's span, with `attrs` (already checked by [`encodable`](Self::encodable)).
    fn leaf(level: usize, hpa: HostPhysAddr, attrs: Attrs) -> u64;

    fn is_valid(entry: u64) -> bool;
    /// Whether a valid entry of `level` points to a table (rather than being a leaf).
    fn is_table(entry: u64, level: usize) -> bool;
    /// The table or the memory a valid entry points to.
    fn address(entry: u64) -> HostPhysAddr;
    /// The attributes of a valid leaf.
    fn attrs(entry: u64) -> Attrs;
}
