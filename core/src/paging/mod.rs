//! One page-table builder for every second-stage format: EPT on x86_64 and VMSAv8-64 stage 2 on
//! aarch64 (the split Hafnium's `arch_mm` makes: a portable walker over small per-format encoders).
//!
//! [`PageTable`] walks a radix tree of `2^BITS_PER_LEVEL`-entry tables and knows nothing about
//! bits in entries: an [`EntryFormat`] encodes and decodes them, and a [`TableMemory`] allocates
//! table frames and reads and writes their entries, so the walker itself touches no raw memory.
//!
//! Levels are numbered from the bottom: level 0 entries map 4 KiB pages, an entry of level `n`
//! spans `4 KiB << (9 * n)`, the root is level `LEVELS - 1`. (Intel: PT = 0, PD = 1, PDPT = 2,
//! PML4 = 3; Arm stage 2 with a 4 KiB granule: level 3 = 0, level 2 = 1, level 1 = 2.)
//!
//! **Changing live tables.** The builder only writes entries. Invalidating what the TLBs cached
//! (INVEPT on x86_64, TLBI IPAS2E1IS / VMALLS12E1IS on aarch64) after `unmap`, `write_protect` or
//! `remap` on tables a vCPU may be using is the caller's job, and so is Arm's break-before-make
//! rule for changing a block into a table (Arm ARM D8.16, TLB maintenance): the builder fills a
//! new table completely before it links it in, but the caller must pause the partition's vCPUs
//! or invalidate in between.

mod attrs;
mod edit;
mod error;
mod format;
mod memory;
mod table;
mod walk;

#[cfg(test)]
mod tests;

pub use attrs::{Attrs, MemKind, Perms};
pub use error::{Operand, PagingError};
pub use format::EntryFormat;
pub use memory::{NoTableFrame, TableMemory};
pub use table::PageTable;
