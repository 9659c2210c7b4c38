//! Portable mapping attributes: what the guest may do with a page and what kind of memory it is.
//! Each [`EntryFormat`](super::EntryFormat) turns them into its own bits.

/// Access permissions of a guest-physical page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Perms {
    pub read: bool,
    pub write: bool,
    pub execute: bool,
}

impl Perms {
    pub const RW: Self = Self {
        read: true,
        write: true,
        execute: false,
    };
    pub const RWX: Self = Self {
        read: true,
        write: true,
        execute: true,
    };
    pub const fn without_write(self) -> Self {
        Self {
            write: false,
            ..self
        }
    }
    pub const fn with_write(self) -> Self {
        Self {
            write: true,
            ..self
        }
    }
}

/// The memory type a mapping gives the guest's accesses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum MemKind {
    /// Cacheable RAM (write-back).
    Normal,
    /// Device registers: uncached, no speculation or merging.
    Device,
}

/// Everything a leaf entry says besides its output address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Attrs {
    pub perms: Perms,
    pub kind: MemKind,
}

impl Attrs {
    /// Normal memory with `perms`: what a partition's RAM regions get.
    pub const fn normal(perms: Perms) -> Self {
        Self {
            perms,
            kind: MemKind::Normal,
        }
    }
}
