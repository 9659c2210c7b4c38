//! Changing what is mapped: `unmap`, `write_protect` (dirty tracking for re-protection) and
//! `remap` (moving a partition's memory, as microreboot and go-live may need). A block only
//! partly covered by the range is first split into the next level, so the rest of it keeps its
//! mapping. TLB invalidation afterwards is the caller's job (see the module documentation).

use super::table::{check_gpa_range, check_hpa_range};
use super::walk::{Chunk, Chunks, span};
use super::{Attrs, EntryFormat, PageTable, PagingError, TableMemory};
use crate::addr::{GuestPhysAddr, HostPhysAddr};

impl<F: EntryFormat, M: TableMemory> PageTable<F, M> {
    /// Unmaps `size` bytes at `gpa`; pages in the range that are not mapped are skipped. Tables
    /// left empty stay in place (Tandem never frees table frames).
    pub fn unmap(&mut self, gpa: GuestPhysAddr, size: u64) -> Result<(), PagingError> {
        let end = check_gpa_range::<F>(gpa, size)?;
        self.edit(self.root, F::LEVELS - 1, gpa.raw(), end, &mut |_, _| None)
    }

    /// Takes write permission away from every mapped page of `size` bytes at `gpa`; unmapped
    /// pages are skipped, read-only ones left as they are.
    pub fn write_protect(&mut self, gpa: GuestPhysAddr, size: u64) -> Result<(), PagingError> {
        let end = check_gpa_range::<F>(gpa, size)?;
        let mut protect = |entry, level| {
            let attrs = F::attrs(entry);
            let read_only = Attrs {
                perms: attrs.perms.without_write(),
                ..attrs
            };
            Some(F::leaf(level, F::address(entry), read_only))
        };
        self.edit(self.root, F::LEVELS - 1, gpa.raw(), end, &mut protect)
    }

    /// Gives write permission back to every mapped page of `size` bytes at `gpa` (the end of
    /// dirty tracking, or a page whose write was just recorded).
    pub fn allow_write(&mut self, gpa: GuestPhysAddr, size: u64) -> Result<(), PagingError> {
        let end = check_gpa_range::<F>(gpa, size)?;
        let mut allow = |entry, level| {
            let attrs = F::attrs(entry);
            let writable = Attrs {
                perms: attrs.perms.with_write(),
                ..attrs
            };
            Some(F::leaf(level, F::address(entry), writable))
        };
        self.edit(self.root, F::LEVELS - 1, gpa.raw(), end, &mut allow)
    }

    /// Points the `size` bytes at `gpa` to `new_hpa` onwards, keeping each page's attributes.
    /// Every page of the range must be mapped; if one is not, nothing is changed and
    /// [`PagingError::NotMapped`] names it.
    pub fn remap(
        &mut self,
        gpa: GuestPhysAddr,
        size: u64,
        new_hpa: HostPhysAddr,
    ) -> Result<(), PagingError> {
        let end = check_gpa_range::<F>(gpa, size)?;
        check_hpa_range::<F>(new_hpa, size)?;
        let top = F::LEVELS - 1;
        self.check_mapped(self.root, top, gpa.raw(), end)?;
        let (start, hpa) = (gpa.raw(), new_hpa.raw());
        self.remap_in(self.root, top, start, end, hpa)
    }

    fn check_mapped(
        &self,
        table: HostPhysAddr,
        level: usize,
        start: u64,
        end: u64,
    ) -> Result<(), PagingError> {
        for c in Chunks::<F>::new(level, start, end) {
            let entry = self.memory.read(table, c.index);
            if !F::is_valid(entry) {
                return Err(PagingError::NotMapped {
                    gpa: GuestPhysAddr::new(c.start),
                });
            }
            if level > 0 && F::is_table(entry, level) {
                self.check_mapped(F::address(entry), level - 1, c.start, c.end)?;
            }
        }
        Ok(())
    }

    fn remap_in(
        &mut self,
        table: HostPhysAddr,
        level: usize,
        start: u64,
        end: u64,
        hpa: u64,
    ) -> Result<(), PagingError> {
        for c in Chunks::<F>::new(level, start, end) {
            let entry = self.memory.read(table, c.index);
            let hpa_here = hpa + (c.start - start);
            let is_leaf = level == 0 || !F::is_table(entry, level);
            // A block whose new address is not aligned to its span becomes smaller leaves.
            if is_leaf && c.full && hpa_here.is_multiple_of(span::<F>(level)) {
                let leaf = F::leaf(level, HostPhysAddr::new(hpa_here), F::attrs(entry));
                self.memory.write(table, c.index, leaf);
            } else {
                let child = self.table_under(table, level, c, entry)?;
                self.remap_in(child, level - 1, c.start, c.end, hpa_here)?;
            }
        }
        Ok(())
    }

    /// Rewrites every valid leaf in `[start, end)` of `table` with `change(entry, level)`
    /// (`None` unmaps it), splitting blocks the range covers only in part. A leaf that `change`
    /// leaves as it is, is not split.
    fn edit(
        &mut self,
        table: HostPhysAddr,
        level: usize,
        start: u64,
        end: u64,
        change: &mut impl FnMut(u64, usize) -> Option<u64>,
    ) -> Result<(), PagingError> {
        for c in Chunks::<F>::new(level, start, end) {
            let entry = self.memory.read(table, c.index);
            if !F::is_valid(entry) {
                continue;
            }
            if level > 0 && F::is_table(entry, level) {
                self.edit(F::address(entry), level - 1, c.start, c.end, change)?;
                continue;
            }
            let new = change(entry, level).unwrap_or(0);
            if new == entry {
                continue;
            }
            if c.full {
                self.memory.write(table, c.index, new);
            } else {
                let child = self.table_under(table, level, c, entry)?;
                self.edit(child, level - 1, c.start, c.end, change)?;
            }
        }
        Ok(())
    }

    /// The table behind `entry` (entry `c.index` of `table`), or, if `entry` is a block, a new
    /// table mapping the same memory with the same attributes one level down, linked in place
    /// of the block once it is complete.
    fn table_under(
        &mut self,
        table: HostPhysAddr,
        level: usize,
        c: Chunk,
        entry: u64,
    ) -> Result<HostPhysAddr, PagingError> {
        if F::is_table(entry, level) {
            return Ok(F::address(entry));
        }
        let child = self.alloc(c.start)?;
        let block_end = c.base + span::<F>(level);
        let hpa = F::address(entry).raw();
        self.fill(child, level - 1, c.base, block_end, hpa, F::attrs(entry))?;
        self.memory.write(table, c.index, F::table(child));
        Ok(child)
    }
}
