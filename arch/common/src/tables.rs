//! The hardware side of second-stage page tables: table frames come from [`frames`] and their
//! entries are read and written in place (frames are identity-mapped). The walking itself is
//! `tandem_core::paging`, the entry bits the backends' formats (EPT, stage 2).

use tandem_core::addr::{GuestPhysAddr, HostPhysAddr};
use tandem_core::config::{MemoryRegion, PAGE_SIZE};
use tandem_core::paging::{
    Attrs, EntryFormat, MemKind, NoTableFrame, PageTable, PagingError, Perms, TableMemory,
};

use crate::frames::{self, OutOfFrames};

/// Table frames of one page table, handed out by [`frames::alloc`].
pub struct FrameTables {
    _only_through_new: (),
}

impl FrameTables {
    /// # Safety
    ///
    /// The result must go straight into a [`PageTable`], which keeps it private and passes
    /// `read` / `write` only its root or frames `alloc_table` returned (the `TableMemory`
    /// contract): those are the only addresses this memory may dereference.
    pub unsafe fn new() -> Self {
        Self {
            _only_through_new: (),
        }
    }

    fn slot(table: HostPhysAddr, index: usize) -> *mut u64 {
        (table.raw() as *mut u64).wrapping_add(index)
    }
}

impl TableMemory for FrameTables {
    fn alloc_table(&mut self) -> Result<HostPhysAddr, NoTableFrame> {
        frames::alloc().map_err(|OutOfFrames| NoTableFrame)
    }

    fn read(&self, table: HostPhysAddr, index: usize) -> u64 {
        // SAFETY: `table` is a frame from `frames::alloc`, identity-mapped, owned by this page
        // table alone, and `index` < 512 (contract of `new`; `build` checks the format's tables
        // fill exactly one frame), so the slot lies inside it.
        unsafe { Self::slot(table, index).read() }
    }

    fn write(&mut self, table: HostPhysAddr, index: usize, entry: u64) {
        // SAFETY: as in `read`.
        unsafe { Self::slot(table, index).write(entry) }
    }
}

/// A device's register window a partition reaches directly, without a trap: `size` bytes of
/// the machine at `hpa`, seen at `gpa` (a GICv2's virtual CPU interface).
#[derive(Debug, Clone, Copy)]
pub struct DeviceWindow {
    pub gpa: GuestPhysAddr,
    pub hpa: HostPhysAddr,
    pub size: u64,
}

/// Builds the second-stage tables in format `F` that map `regions` (a partition's memory) and
/// `devices`, and nothing else, and returns the root table's address. Each region is normal
/// memory, readable and writable, executable if the configuration says so; each device window
/// Device memory, readable and writable, never executable.
pub fn build<F: EntryFormat>(
    regions: &[MemoryRegion],
    devices: &[DeviceWindow],
) -> Result<HostPhysAddr, OutOfFrames> {
    const { assert!(8 << F::BITS_PER_LEVEL == PAGE_SIZE && 1 << F::PAGE_SHIFT == PAGE_SIZE) };
    // SAFETY: the memory goes straight into the page table.
    let memory = unsafe { FrameTables::new() };
    let mut table = PageTable::<F, _>::new(memory).map_err(refused)?;
    for r in regions {
        let perms = if r.executable { Perms::RWX } else { Perms::RW };
        table
            .map(r.gpa, r.size, r.hpa, Attrs::normal(perms))
            .map_err(refused)?;
    }
    for d in devices {
        let attrs = Attrs {
            perms: Perms::RW,
            kind: MemKind::Device,
        };
        table.map(d.gpa, d.size, d.hpa, attrs).map_err(refused)?;
    }
    Ok(table.root())
}

/// The validated configuration (page-aligned, disjoint regions below `MAX_GPA`, see
/// `config::validate`) leaves running out of frames as the only way `build` can fail, and that
/// is the one error its callers know; anything else is logged with its reason and refused the
/// same way.
fn refused(e: PagingError) -> OutOfFrames {
    if !matches!(e, PagingError::OutOfFrames { .. }) {
        defmt::error!("second-stage tables refused a region: {}", e);
    }
    OutOfFrames
}
