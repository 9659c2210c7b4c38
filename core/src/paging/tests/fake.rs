//! A made-up entry format and a `Vec` of table frames, so the walker runs on the host.

use std::collections::BTreeMap;

use crate::addr::HostPhysAddr;
use crate::paging::{Attrs, EntryFormat, MemKind, NoTableFrame, Perms, TableMemory};

const VALID: u64 = 1 << 0;
const TABLE: u64 = 1 << 1;
const READ: u64 = 1 << 2;
const WRITE: u64 = 1 << 3;
const EXECUTE: u64 = 1 << 4;
const DEVICE: u64 = 1 << 5;
/// Records the level a leaf was written for, so tests can see block sizes.
const LEVEL_SHIFT: u32 = 6;
const ADDRESS: u64 = 0x000f_ffff_ffff_f000;

/// Four levels like EPT; `BLOCKS` is a bit mask of the levels that may hold blocks.
pub struct Fake<const BLOCKS: u8>;

/// Blocks at level 1 only (2 MiB), as Tandem's EPT and stage 2 use them.
pub type Fake2M = Fake<0b010>;
/// Blocks at levels 1 and 2 (2 MiB and 1 GiB).
pub type Fake1G = Fake<0b110>;

impl<const BLOCKS: u8> EntryFormat for Fake<BLOCKS> {
    const LEVELS: usize = 4;
    const OUTPUT_BITS: u32 = 52;

    fn block_allowed(level: usize) -> bool {
        BLOCKS & (1 << level) != 0
    }
    fn encodable(attrs: Attrs) -> bool {
        attrs.perms.read || !attrs.perms.write
    }
    fn table(next: HostPhysAddr) -> u64 {
        next.raw() | VALID | TABLE
    }
    fn leaf(level: usize, hpa: HostPhysAddr, attrs: Attrs) -> u64 {
        // Real formats have no room for the low bits of a block's address.
        let span = 1u64 << (12 + 9 * level);
        assert_eq!(
            hpa.raw() % span,
            0,
            "level-{level} leaf at unaligned {hpa:?}"
        );
        let p = attrs.perms;
        hpa.raw()
            | VALID
            | if p.read { READ } else { 0 }
            | if p.write { WRITE } else { 0 }
            | if p.execute { EXECUTE } else { 0 }
            | if attrs.kind == MemKind::Device {
                DEVICE
            } else {
                0
            }
            | (level as u64) << LEVEL_SHIFT
    }
    fn is_valid(entry: u64) -> bool {
        entry & VALID != 0
    }
    fn is_table(entry: u64, _level: usize) -> bool {
        entry & TABLE != 0
    }
    fn address(entry: u64) -> HostPhysAddr {
        HostPhysAddr::new(entry & ADDRESS)
    }
    fn attrs(entry: u64) -> Attrs {
        Attrs {
            perms: Perms {
                read: entry & READ != 0,
                write: entry & WRITE != 0,
                execute: entry & EXECUTE != 0,
            },
            kind: if entry & DEVICE != 0 {
                MemKind::Device
            } else {
                MemKind::Normal
            },
        }
    }
}

/// The level a fake leaf was written for.
pub fn leaf_level(entry: u64) -> u64 {
    (entry >> LEVEL_SHIFT) & 0b11
}

/// Table frames at `BASE`, `BASE + 4 KiB`, ..., at most `limit` of them.
pub struct VecMemory {
    pub frames: Vec<[u64; 512]>,
    pub limit: usize,
}

const BASE: u64 = 0x7700_0000;

impl VecMemory {
    pub fn new(limit: usize) -> Self {
        Self {
            frames: Vec::new(),
            limit,
        }
    }
    fn frame(table: HostPhysAddr) -> usize {
        assert_eq!(
            table.raw() % 4096,
            0,
            "table address {table:?} is not a frame"
        );
        ((table.raw() - BASE) / 4096) as usize
    }
    /// Every entry of every frame, keyed by frame number and index, zeros left out.
    pub fn entries(&self) -> BTreeMap<(usize, usize), u64> {
        let mut all = BTreeMap::new();
        for (f, frame) in self.frames.iter().enumerate() {
            for (i, &e) in frame.iter().enumerate() {
                if e != 0 {
                    all.insert((f, i), e);
                }
            }
        }
        all
    }
}

impl TableMemory for VecMemory {
    fn alloc_table(&mut self) -> Result<HostPhysAddr, NoTableFrame> {
        if self.frames.len() == self.limit {
            return Err(NoTableFrame);
        }
        self.frames.push([0; 512]);
        Ok(HostPhysAddr::new(
            BASE + 4096 * (self.frames.len() as u64 - 1),
        ))
    }
    fn read(&self, table: HostPhysAddr, index: usize) -> u64 {
        self.frames[Self::frame(table)][index]
    }
    fn write(&mut self, table: HostPhysAddr, index: usize, entry: u64) {
        self.frames[Self::frame(table)][index] = entry;
    }
}
