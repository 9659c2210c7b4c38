//! The page table itself: creation, `map` and `translate`. Operations that change existing
//! mappings are in `edit.rs`.

use core::marker::PhantomData;

use super::walk::{Chunks, gpa_limit, span};
use super::{Attrs, EntryFormat, Operand, PagingError, TableMemory};
use crate::addr::{GuestPhysAddr, HostPhysAddr};

/// A second-stage translation (guest-physical to host-physical) in format `F`, its tables in
/// memory `M`.
pub struct PageTable<F, M> {
    pub(super) root: HostPhysAddr,
    pub(super) memory: M,
    format: PhantomData<F>,
}

impl<F: EntryFormat, M: TableMemory> PageTable<F, M> {
    /// An empty translation: one root table, nothing mapped.
    pub fn new(mut memory: M) -> Result<Self, PagingError> {
        // The root is the table that maps GPA 0 onwards.
        let root = memory.alloc_table().map_err(|_| PagingError::OutOfFrames {
            gpa: GuestPhysAddr::new(0),
        })?;
        Ok(Self {
            root,
            memory,
            format: PhantomData,
        })
    }

    /// The translation whose root table is `root`, in `memory` (tables an earlier
    /// [`PageTable::new`] over the same memory built), to change it.
    pub fn open(root: HostPhysAddr, memory: M) -> Self {
        Self {
            root,
            memory,
            format: PhantomData,
        }
    }

    /// The root table's address (for the EPT pointer or VTTBR_EL2).
    pub fn root(&self) -> HostPhysAddr {
        self.root
    }

    /// Where `gpa` leads and with which attributes, if it is mapped.
    pub fn translate(&self, gpa: GuestPhysAddr) -> Option<(HostPhysAddr, Attrs)> {
        let gpa = gpa.raw();
        if gpa >= gpa_limit::<F>() {
            return None;
        }
        let mut table = self.root;
        for level in (0..F::LEVELS).rev() {
            let chunk = Chunks::<F>::new(level, gpa, gpa + 1).next()?;
            let entry = self.memory.read(table, chunk.index);
            if !F::is_valid(entry) {
                return None;
            }
            if level > 0 && F::is_table(entry, level) {
                table = F::address(entry);
            } else {
                let offset = gpa - chunk.base;
                return Some((F::address(entry) + offset, F::attrs(entry)));
            }
        }
        None
    }

    /// Maps `size` bytes at `gpa` to `hpa` with `attrs`, with the largest blocks the format
    /// allows where both addresses and the remaining size are aligned to them, pages elsewhere.
    ///
    /// Mapping a range again the same way changes nothing; if any page of it is already mapped
    /// differently, nothing is changed and [`PagingError::Overlaps`] names it. Running out of
    /// table frames can leave the range partly mapped (what is mapped is correct).
    pub fn map(
        &mut self,
        gpa: GuestPhysAddr,
        size: u64,
        hpa: HostPhysAddr,
        attrs: Attrs,
    ) -> Result<(), PagingError> {
        let end = check_gpa_range::<F>(gpa, size)?;
        check_hpa_range::<F>(hpa, size)?;
        if !F::encodable(attrs) {
            return Err(PagingError::Unsupported { attrs });
        }
        let top = F::LEVELS - 1;
        self.check_free(self.root, top, gpa.raw(), end, hpa.raw(), attrs)?;
        self.fill(self.root, top, gpa.raw(), end, hpa.raw(), attrs)
    }

    /// Whether every page of `[start, end)` in `table` is either unmapped or already maps
    /// `hpa + offset` with `attrs`.
    fn check_free(
        &self,
        table: HostPhysAddr,
        level: usize,
        start: u64,
        end: u64,
        hpa: u64,
        attrs: Attrs,
    ) -> Result<(), PagingError> {
        for c in Chunks::<F>::new(level, start, end) {
            let entry = self.memory.read(table, c.index);
            let hpa_here = hpa + (c.start - start);
            if !F::is_valid(entry) {
                continue;
            }
            if level > 0 && F::is_table(entry, level) {
                self.check_free(
                    F::address(entry),
                    level - 1,
                    c.start,
                    c.end,
                    hpa_here,
                    attrs,
                )?;
            } else if F::attrs(entry) != attrs
                || F::address(entry).raw() + (c.start - c.base) != hpa_here
            {
                return Err(PagingError::Overlaps {
                    gpa: GuestPhysAddr::new(c.start),
                });
            }
        }
        Ok(())
    }

    /// Maps the unmapped pages of `[start, end)` in `table` to `hpa + offset`, creating tables
    /// as needed; pages already mapped are left alone (`check_free` vouched for them).
    pub(super) fn fill(
        &mut self,
        table: HostPhysAddr,
        level: usize,
        start: u64,
        end: u64,
        hpa: u64,
        attrs: Attrs,
    ) -> Result<(), PagingError> {
        for c in Chunks::<F>::new(level, start, end) {
            let entry = self.memory.read(table, c.index);
            let hpa_here = hpa + (c.start - start);
            if level > 0 && F::is_valid(entry) && F::is_table(entry, level) {
                self.fill(
                    F::address(entry),
                    level - 1,
                    c.start,
                    c.end,
                    hpa_here,
                    attrs,
                )?;
            } else if F::is_valid(entry) {
                continue;
            } else if level == 0
                || (c.full && F::block_allowed(level) && hpa_here.is_multiple_of(span::<F>(level)))
            {
                let leaf = F::leaf(level, HostPhysAddr::new(hpa_here), attrs);
                self.memory.write(table, c.index, leaf);
            } else {
                let child = self.alloc(c.start)?;
                self.memory.write(table, c.index, F::table(child));
                self.fill(child, level - 1, c.start, c.end, hpa_here, attrs)?;
            }
        }
        Ok(())
    }

    pub(super) fn alloc(&mut self, gpa: u64) -> Result<HostPhysAddr, PagingError> {
        self.memory
            .alloc_table()
            .map_err(|_| PagingError::OutOfFrames {
                gpa: GuestPhysAddr::new(gpa),
            })
    }
}

fn check_aligned<F: EntryFormat>(what: Operand, value: u64) -> Result<(), PagingError> {
    if value.is_multiple_of(1 << F::PAGE_SHIFT) {
        Ok(())
    } else {
        Err(PagingError::Misaligned { what, value })
    }
}

/// Checks a guest range and returns its end.
pub(super) fn check_gpa_range<F: EntryFormat>(
    gpa: GuestPhysAddr,
    size: u64,
) -> Result<u64, PagingError> {
    check_aligned::<F>(Operand::Gpa, gpa.raw())?;
    check_aligned::<F>(Operand::Size, size)?;
    match gpa.raw().checked_add(size) {
        Some(end) if end <= gpa_limit::<F>() => Ok(end),
        _ => Err(PagingError::GpaOutOfRange { gpa, size }),
    }
}

pub(super) fn check_hpa_range<F: EntryFormat>(
    hpa: HostPhysAddr,
    size: u64,
) -> Result<(), PagingError> {
    check_aligned::<F>(Operand::Hpa, hpa.raw())?;
    match hpa.raw().checked_add(size) {
        Some(end) if end <= 1 << F::OUTPUT_BITS => Ok(()),
        _ => Err(PagingError::HpaOutOfRange { hpa, size }),
    }
}
