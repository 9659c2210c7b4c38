//! Dirty-page tracking for re-protection, through second-stage write protection (EPT, stage 2):
//! tracking takes write permission away from every page of the partition; the guest's first
//! write to a page then faults to the hypervisor, which records the page, gives write permission
//! back and lets the guest retry the instruction (the guest never sees it, and the exit is not
//! counted). Taking a page to copy write-protects it again. The 2 MiB blocks the partition was
//! mapped with split into pages the first time one of their pages is written.

use core::marker::PhantomData;

use tandem_core::addr::{GuestPhysAddr, HostPhysAddr};
use tandem_core::config::{MemoryRegion, PAGE_SIZE};
use tandem_core::paging::{EntryFormat, PageTable};

use crate::tables::FrameTables;

/// A second-stage table format whose cached translations the CPU running the partition can drop.
pub trait Tracked: EntryFormat {
    /// Drops this CPU's cached translations of the partition it runs, which is not running, so
    /// a permission change applies to the guest's next access.
    fn flush_guest_tlb();
}

/// Pages a partition may have for its writes to be tracked (64 MiB).
pub const MAX_TRACKED_PAGES: usize = 16384;

/// Why tracking cannot start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum TrackError {
    /// The partition has more than [`MAX_TRACKED_PAGES`] pages.
    TooLarge { pages: u64 },
    /// Its second-stage tables could not be changed (no frame left to split a block).
    Tables,
}

/// The written pages of one partition's memory, numbered across its regions in order.
pub struct DirtyPages<F: Tracked> {
    root: u64,
    memory: &'static [MemoryRegion],
    bits: [u64; MAX_TRACKED_PAGES / 64],
    dirty: u64,
    active: bool,
    format: PhantomData<F>,
}

impl<F: Tracked> DirtyPages<F> {
    /// Tracking for the partition with second-stage root `root` and memory `memory`; off until
    /// [`DirtyPages::start`].
    pub const fn new(root: u64, memory: &'static [MemoryRegion]) -> Self {
        Self {
            root,
            memory,
            bits: [0; MAX_TRACKED_PAGES / 64],
            dirty: 0,
            active: false,
            format: PhantomData,
        }
    }

    fn table(&self) -> PageTable<F, FrameTables> {
        // SAFETY: the memory goes straight into a page table over this partition's own
        // second-stage tables, which `tables::build` made from frames.
        PageTable::open(HostPhysAddr::new(self.root), unsafe { FrameTables::new() })
    }

    /// Pages of the partition.
    pub fn pages(&self) -> u64 {
        self.memory.iter().map(|r| r.size / PAGE_SIZE).sum()
    }

    fn gpa_of(&self, mut page: u64) -> Option<u64> {
        for r in self.memory {
            let pages = r.size / PAGE_SIZE;
            if page < pages {
                return Some(r.gpa.raw() + page * PAGE_SIZE);
            }
            page -= pages;
        }
        None
    }

    fn page_of(&self, gpa: u64) -> Option<u64> {
        let mut first = 0;
        for r in self.memory {
            if r.contains_gpa(GuestPhysAddr::new(gpa), 1) {
                return Some(first + (gpa - r.gpa.raw()) / PAGE_SIZE);
            }
            first += r.size / PAGE_SIZE;
        }
        None
    }

    /// Writes from now on are recorded: every page is write-protected and none is dirty.
    pub fn start(&mut self) -> Result<u64, TrackError> {
        let pages = self.pages();
        if pages > MAX_TRACKED_PAGES as u64 {
            return Err(TrackError::TooLarge { pages });
        }
        self.bits = [0; MAX_TRACKED_PAGES / 64];
        self.dirty = 0;
        let mut table = self.table();
        for r in self.memory {
            table
                .write_protect(r.gpa, r.size)
                .map_err(|_| TrackError::Tables)?;
        }
        F::flush_guest_tlb();
        self.active = true;
        Ok(pages)
    }

    /// Tracking ends: every page is writable again.
    pub fn stop(&mut self) {
        if !self.active {
            return;
        }
        self.active = false;
        let mut table = self.table();
        for r in self.memory {
            // Giving permission back never needs a new table, so it cannot fail here.
            let _ = table.allow_write(r.gpa, r.size);
        }
        F::flush_guest_tlb();
    }

    /// A second-stage write fault at `ipa`: while tracking, a write to the partition's memory,
    /// recorded and allowed (the guest then retries it). `false` if it is not one.
    pub fn record_write(&mut self, ipa: u64) -> bool {
        let Some(page) = self.page_of(ipa).filter(|_| self.active) else {
            return false;
        };
        let page_gpa = GuestPhysAddr::new(ipa & !(PAGE_SIZE - 1));
        if self.table().allow_write(page_gpa, PAGE_SIZE).is_err() {
            return false;
        }
        F::flush_guest_tlb();
        let (word, bit) = ((page / 64) as usize, page % 64);
        if self.bits[word] & (1 << bit) == 0 {
            self.bits[word] |= 1 << bit;
            self.dirty += 1;
        }
        true
    }

    /// Moves up to `out.len()` dirty page numbers into `out`, write-protecting each again so a
    /// later write is seen; returns how many.
    pub fn take(&mut self, out: &mut [u64]) -> usize {
        let mut taken = 0;
        for word in 0..self.bits.len() {
            while self.bits[word] != 0 && taken < out.len() {
                let bit = u64::from(self.bits[word].trailing_zeros());
                self.bits[word] &= !(1 << bit);
                let page = word as u64 * 64 + bit;
                out[taken] = page;
                taken += 1;
                self.dirty -= 1;
            }
            if taken == out.len() {
                break;
            }
        }
        let mut table = self.table();
        for &page in &out[..taken] {
            if let Some(gpa) = self.gpa_of(page) {
                // The page was split out when it was written: protecting it needs no table.
                let _ = table.write_protect(GuestPhysAddr::new(gpa), PAGE_SIZE);
            }
        }
        F::flush_guest_tlb();
        taken
    }

    /// Pages dirty now.
    pub fn count(&self) -> u64 {
        self.dirty
    }

    /// Whether writes are being tracked.
    pub fn active(&self) -> bool {
        self.active
    }
}
