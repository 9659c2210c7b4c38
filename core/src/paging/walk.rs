//! The geometry every operation shares: how a guest range falls on the entries of one table.

use core::marker::PhantomData;

use super::EntryFormat;

/// Bytes one entry of `level` spans.
pub(super) const fn span<F: EntryFormat>(level: usize) -> u64 {
    1 << (F::PAGE_SHIFT + F::BITS_PER_LEVEL * level as u32)
}

/// The first guest-physical address the root table cannot reach.
pub(super) const fn gpa_limit<F: EntryFormat>() -> u64 {
    span::<F>(F::LEVELS)
}

/// The part of a range that one entry of a table covers.
#[derive(Debug, Clone, Copy)]
pub(super) struct Chunk {
    /// The entry's index in its table.
    pub index: usize,
    /// Where the covered part starts and ends (guest-physical).
    pub start: u64,
    pub end: u64,
    /// The first address the entry maps.
    pub base: u64,
    /// Whether the range covers the whole entry.
    pub full: bool,
}

/// The chunks of `[start, end)` in a table of `level`, in address order; the range lies inside
/// what that table spans.
pub(super) struct Chunks<F> {
    span: u64,
    next: u64,
    end: u64,
    format: PhantomData<F>,
}

impl<F: EntryFormat> Chunks<F> {
    pub fn new(level: usize, start: u64, end: u64) -> Self {
        Self {
            span: span::<F>(level),
            next: start,
            end,
            format: PhantomData,
        }
    }
}

impl<F: EntryFormat> Iterator for Chunks<F> {
    type Item = Chunk;

    fn next(&mut self) -> Option<Chunk> {
        if self.next >= self.end {
            return None;
        }
        let start = self.next;
        let base = start - start % self.span;
        let end = self.end.min(base + self.span);
        self.next = end;
        Some(Chunk {
            index: ((start / self.span) % (1 << F::BITS_PER_LEVEL)) as usize,
            start,
            end,
            base,
            full: start == base && end == base + self.span,
        })
    }
}
