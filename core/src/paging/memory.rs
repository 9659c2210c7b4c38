//! Where tables live: the walker asks for frames and reads and writes entries through this trait
//! and never dereferences an address itself (the hypervisor's implementation is
//! `tandem_hw::tables`, the host tests' a `Vec`).

use crate::addr::HostPhysAddr;

/// No frame was left for a new table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NoTableFrame;

/// Table frames and their entries. [`PageTable`](super::PageTable) calls `read` and `write`
/// only with its root or a frame this memory's `alloc_table` returned, and with an index below
/// `1 << BITS_PER_LEVEL`; an implementation may rely on that.
pub trait TableMemory {
    /// A new table frame with every entry zero.
    fn alloc_table(&mut self) -> Result<HostPhysAddr, NoTableFrame>;
    fn read(&self, table: HostPhysAddr, index: usize) -> u64;
    fn write(&mut self, table: HostPhysAddr, index: usize, entry: u64);
}
