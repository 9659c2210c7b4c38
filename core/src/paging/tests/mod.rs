//! The walker on the host, over a fake format and `Vec`-backed tables.

mod fake;
mod props;

use fake::{Fake1G, Fake2M, VecMemory, leaf_level};

use crate::addr::{GuestPhysAddr, HostPhysAddr};
use crate::paging::{
    Attrs, EntryFormat, MemKind, Operand, PageTable, PagingError, Perms, TableMemory,
};

const K4: u64 = 0x1000;
const M2: u64 = 0x20_0000;
const G1: u64 = 0x4000_0000;
const RAM: u64 = 0x8000_0000;

fn gpa(a: u64) -> GuestPhysAddr {
    GuestPhysAddr::new(a)
}
fn hpa(a: u64) -> HostPhysAddr {
    HostPhysAddr::new(a)
}
fn rw() -> Attrs {
    Attrs::normal(Perms::RW)
}
fn rwx() -> Attrs {
    Attrs::normal(Perms::RWX)
}
fn ro() -> Attrs {
    Attrs::normal(Perms::RW.without_write())
}

fn table<F: EntryFormat>() -> PageTable<F, VecMemory> {
    PageTable::new(VecMemory::new(1000)).unwrap()
}

/// The level of the leaf that maps `at`.
fn leaf_level_at<F: EntryFormat>(t: &PageTable<F, VecMemory>, at: u64) -> u64 {
    let mut table = t.root();
    for level in (0..F::LEVELS).rev() {
        let shift = 12 + 9 * level as u32;
        let entry = t.memory.read(table, ((at >> shift) & 0x1ff) as usize);
        if !F::is_table(entry, level) {
            return leaf_level(entry);
        }
        table = F::address(entry);
    }
    panic!("no leaf maps {at:#x}")
}

fn frames<F>(t: &PageTable<F, VecMemory>) -> usize {
    t.memory.frames.len()
}

/// Every page of `[start, start + size)` translates to `to + offset` with `attrs`, and so does an
/// address inside each page.
fn assert_maps<F: EntryFormat>(
    t: &PageTable<F, VecMemory>,
    start: u64,
    size: u64,
    to: u64,
    attrs: Attrs,
) {
    for off in (0..size).step_by(K4 as usize) {
        for inside in [0, 0x7f8] {
            let got = t.translate(gpa(start + off + inside));
            assert_eq!(
                got,
                Some((hpa(to + off + inside), attrs)),
                "at {:#x}",
                start + off
            );
        }
    }
}

#[test]
fn maps_with_blocks_where_both_addresses_and_the_size_allow() {
    let mut t = table::<Fake2M>();
    // 1 MiB of pages, then two 2 MiB blocks.
    t.map(gpa(0x10_0000), 5 * 0x10_0000, hpa(RAM + 0x10_0000), rwx())
        .unwrap();
    assert_maps(&t, 0x10_0000, 5 * 0x10_0000, RAM + 0x10_0000, rwx());
    assert_eq!(leaf_level_at(&t, 0x10_0000), 0);
    assert_eq!(leaf_level_at(&t, M2), 1);
    assert_eq!(leaf_level_at(&t, 2 * M2 + 0x5000), 1);
    // Root, level 2, level 1 and one page table.
    assert_eq!(frames(&t), 4);
    assert_eq!(t.translate(gpa(0x10_0000 - 1)), None);
    assert_eq!(t.translate(gpa(0x60_0000)), None);
}

#[test]
fn maps_pages_only_when_the_host_address_is_not_block_aligned() {
    let mut t = table::<Fake2M>();
    t.map(gpa(0), 2 * M2, hpa(RAM + K4), rw()).unwrap();
    assert_maps(&t, 0, 2 * M2, RAM + K4, rw());
    assert_eq!(leaf_level_at(&t, 0), 0);
    assert_eq!(leaf_level_at(&t, M2), 0);
}

#[test]
fn uses_only_the_block_levels_the_format_allows() {
    let mut t2 = table::<Fake2M>();
    let mut t1 = table::<Fake1G>();
    t2.map(gpa(G1), G1, hpa(RAM), rw()).unwrap();
    t1.map(gpa(G1), G1, hpa(RAM), rw()).unwrap();
    assert_eq!(leaf_level_at(&t2, G1), 1);
    assert_eq!(leaf_level_at(&t1, G1 + 0x1234_5000), 2);
    assert_maps(&t1, G1, G1, RAM, rw());
}

#[test]
fn device_memory_keeps_its_kind() {
    let mut t = table::<Fake2M>();
    let device = Attrs {
        perms: Perms::RW,
        kind: MemKind::Device,
    };
    t.map(gpa(0x900_0000), K4, hpa(0x900_0000), device).unwrap();
    assert_eq!(
        t.translate(gpa(0x900_0010)),
        Some((hpa(0x900_0010), device))
    );
}

#[test]
fn mapping_the_same_again_changes_nothing() {
    let mut t = table::<Fake2M>();
    t.map(gpa(0x10_0000), 4 * M2, hpa(RAM + 0x10_0000), rw())
        .unwrap();
    let before = t.memory.entries();
    t.map(gpa(0x10_0000), 4 * M2, hpa(RAM + 0x10_0000), rw())
        .unwrap();
    // A part of it, and a part of a block.
    t.map(gpa(M2 + K4), 3 * K4, hpa(RAM + M2 + K4), rw())
        .unwrap();
    assert_eq!(t.memory.entries(), before);
}

#[test]
fn mapping_over_a_different_mapping_is_refused_and_changes_nothing() {
    let mut t = table::<Fake2M>();
    t.map(gpa(M2), M2, hpa(RAM), rw()).unwrap();
    let before = t.memory.entries();
    // Starts in free space, runs into the block: nothing of it may be mapped.
    let err = t.map(gpa(M2 - 2 * K4), 4 * K4, hpa(RAM + M2), rw());
    assert_eq!(err, Err(PagingError::Overlaps { gpa: gpa(M2) }));
    let err = t.map(gpa(M2 + K4), K4, hpa(RAM + K4), rwx());
    assert_eq!(err, Err(PagingError::Overlaps { gpa: gpa(M2 + K4) }));
    assert_eq!(t.memory.entries(), before);
}

#[test]
fn partial_write_protect_splits_a_block_and_the_rest_keeps_its_permissions() {
    let mut t = table::<Fake2M>();
    t.map(gpa(0), 2 * M2, hpa(RAM), rwx()).unwrap();
    let before = frames(&t);
    t.write_protect(gpa(M2 + K4), 2 * K4).unwrap();
    assert_eq!(frames(&t), before + 1);
    let read_exec = Attrs::normal(Perms::RWX.without_write());
    assert_maps(&t, 0, M2 + K4, RAM, rwx());
    assert_maps(&t, M2 + K4, 2 * K4, RAM + M2 + K4, read_exec);
    assert_maps(&t, M2 + 3 * K4, M2 - 3 * K4, RAM + M2 + 3 * K4, rwx());
    assert_eq!(leaf_level_at(&t, 0), 1);
    assert_eq!(leaf_level_at(&t, M2), 0);
}

#[test]
fn allowing_one_page_of_a_protected_block_splits_it_and_only_that_page_is_writable() {
    let mut t = table::<Fake2M>();
    t.map(gpa(0), M2, hpa(RAM), rw()).unwrap();
    t.write_protect(gpa(0), M2).unwrap();
    let before = frames(&t);
    t.allow_write(gpa(3 * K4), K4).unwrap();
    assert_eq!(frames(&t), before + 1);
    assert_maps(&t, 0, 3 * K4, RAM, ro());
    assert_maps(&t, 3 * K4, K4, RAM + 3 * K4, rw());
    assert_maps(&t, 4 * K4, M2 - 4 * K4, RAM + 4 * K4, ro());
    t.allow_write(gpa(0), M2).unwrap();
    assert_maps(&t, 0, M2, RAM, rw());
}

#[test]
fn write_protect_keeps_whole_blocks_and_skips_holes() {
    let mut t = table::<Fake2M>();
    t.map(gpa(0), M2, hpa(RAM), rw()).unwrap();
    t.map(gpa(2 * M2), K4, hpa(RAM + 2 * M2), rw()).unwrap();
    let before = frames(&t);
    t.write_protect(gpa(0), 3 * M2).unwrap();
    assert_eq!(frames(&t), before);
    assert_maps(&t, 0, M2, RAM, ro());
    assert_maps(&t, 2 * M2, K4, RAM + 2 * M2, ro());
    // Already read-only: a partial range does not split the block.
    t.write_protect(gpa(K4), K4).unwrap();
    assert_eq!(frames(&t), before);
}

#[test]
fn write_protect_splits_a_large_block_down_to_pages() {
    let mut t = table::<Fake1G>();
    t.map(gpa(0), G1, hpa(RAM), rw()).unwrap();
    t.write_protect(gpa(3 * M2 + 5 * K4), K4).unwrap();
    // Root and level 2; the 1 GiB block became 2 MiB blocks, one of them pages.
    assert_eq!(frames(&t), 2 + 2);
    assert_eq!(leaf_level_at(&t, 0), 1);
    assert_eq!(leaf_level_at(&t, 3 * M2), 0);
    assert_maps(&t, 0, 3 * M2 + 5 * K4, RAM, rw());
    assert_maps(&t, 3 * M2 + 5 * K4, K4, RAM + 3 * M2 + 5 * K4, ro());
    assert_maps(
        &t,
        3 * M2 + 6 * K4,
        G1 - 3 * M2 - 6 * K4,
        RAM + 3 * M2 + 6 * K4,
        rw(),
    );
}

#[test]
fn remap_moves_pages_and_keeps_their_attributes() {
    let mut t = table::<Fake2M>();
    t.map(gpa(0), 2 * M2, hpa(RAM), rwx()).unwrap();
    t.write_protect(gpa(K4), K4).unwrap();
    // Block-aligned target: the second block stays a block.
    t.remap(gpa(M2), M2, hpa(RAM + 8 * M2)).unwrap();
    assert_eq!(leaf_level_at(&t, M2), 1);
    assert_maps(&t, M2, M2, RAM + 8 * M2, rwx());
    // The first 2 MiB (already pages) moves to an unaligned target, its permissions kept.
    t.remap(gpa(0), M2, hpa(RAM + 16 * M2 + K4)).unwrap();
    assert_maps(&t, 0, K4, RAM + 16 * M2 + K4, rwx());
    let ro_x = Attrs::normal(Perms::RWX.without_write());
    assert_maps(&t, K4, K4, RAM + 16 * M2 + 2 * K4, ro_x);
    assert_maps(&t, 2 * K4, M2 - 2 * K4, RAM + 16 * M2 + 3 * K4, rwx());
}

#[test]
fn remap_of_part_of_a_block_or_to_an_unaligned_address_splits_it() {
    let mut t = table::<Fake2M>();
    t.map(gpa(0), 2 * M2, hpa(RAM), rw()).unwrap();
    t.remap(gpa(K4), K4, hpa(0x1234_5000)).unwrap();
    t.remap(gpa(M2), M2, hpa(RAM + 8 * M2 + K4)).unwrap();
    assert_maps(&t, 0, K4, RAM, rw());
    assert_maps(&t, K4, K4, 0x1234_5000, rw());
    assert_maps(&t, 2 * K4, M2 - 2 * K4, RAM + 2 * K4, rw());
    assert_maps(&t, M2, M2, RAM + 8 * M2 + K4, rw());
    assert_eq!(leaf_level_at(&t, M2), 0);
}

#[test]
fn remap_over_a_hole_is_refused_and_changes_nothing() {
    let mut t = table::<Fake2M>();
    t.map(gpa(0), M2, hpa(RAM), rw()).unwrap();
    t.map(gpa(M2 + K4), K4, hpa(RAM + M2 + K4), rw()).unwrap();
    let before = t.memory.entries();
    let err = t.remap(gpa(M2 - K4), 3 * K4, hpa(RAM + 4 * M2));
    assert_eq!(err, Err(PagingError::NotMapped { gpa: gpa(M2) }));
    assert_eq!(t.memory.entries(), before);
}

#[test]
fn unmap_removes_part_of_a_block_and_skips_holes() {
    let mut t = table::<Fake2M>();
    t.map(gpa(0), M2, hpa(RAM), rw()).unwrap();
    t.unmap(gpa(M2 - 2 * K4), 4 * K4).unwrap();
    assert_maps(&t, 0, M2 - 2 * K4, RAM, rw());
    for page in [M2 - 2 * K4, M2 - K4, M2, M2 + K4] {
        assert_eq!(t.translate(gpa(page)), None);
    }
    t.unmap(gpa(0), 4 * M2).unwrap();
    assert_eq!(t.translate(gpa(0)), None);
    // Unmapped space can be mapped again, another way.
    t.map(gpa(0), K4, hpa(RAM + 5 * K4), rwx()).unwrap();
    assert_maps(&t, 0, K4, RAM + 5 * K4, rwx());
}

#[test]
fn running_out_of_frames_is_an_error_naming_the_address() {
    assert!(matches!(
        PageTable::<Fake2M, _>::new(VecMemory::new(0)),
        Err(PagingError::OutOfFrames { .. })
    ));
    // Root, level 2 and level 1 fit; the page table for 0x20_1000 does not.
    let mut t = PageTable::<Fake2M, _>::new(VecMemory::new(3)).unwrap();
    let err = t.map(gpa(0), M2 + K4, hpa(RAM), rw());
    assert_eq!(err, Err(PagingError::OutOfFrames { gpa: gpa(M2) }));
    // What was mapped before the frames ran out is correct.
    assert_maps(&t, 0, M2, RAM, rw());
    // Splitting a block needs a frame too.
    let err = t.write_protect(gpa(0), K4);
    assert_eq!(err, Err(PagingError::OutOfFrames { gpa: gpa(0) }));
    assert_maps(&t, 0, M2, RAM, rw());
}

#[test]
fn misaligned_and_out_of_range_arguments_are_refused() {
    let mut t = table::<Fake2M>();
    let misaligned = |what, value| Err(PagingError::Misaligned { what, value });
    assert_eq!(
        t.map(gpa(0x800), K4, hpa(RAM), rw()),
        misaligned(Operand::Gpa, 0x800)
    );
    assert_eq!(
        t.map(gpa(0), K4, hpa(RAM + 8), rw()),
        misaligned(Operand::Hpa, RAM + 8)
    );
    assert_eq!(
        t.map(gpa(0), 0x10, hpa(RAM), rw()),
        misaligned(Operand::Size, 0x10)
    );
    assert_eq!(t.unmap(gpa(0), 0x10), misaligned(Operand::Size, 0x10));
    assert_eq!(t.write_protect(gpa(1), K4), misaligned(Operand::Gpa, 1));
    assert_eq!(t.remap(gpa(0), K4, hpa(3)), misaligned(Operand::Hpa, 3));
    let top = 1 << 48;
    assert_eq!(
        t.map(gpa(top - K4), 2 * K4, hpa(RAM), rw()),
        Err(PagingError::GpaOutOfRange {
            gpa: gpa(top - K4),
            size: 2 * K4
        })
    );
    assert_eq!(
        t.map(gpa(u64::MAX - 0xfff), 2 * K4, hpa(RAM), rw()),
        Err(PagingError::GpaOutOfRange {
            gpa: gpa(u64::MAX - 0xfff),
            size: 2 * K4
        })
    );
    let last = (1 << 52) - K4;
    assert_eq!(
        t.map(gpa(0), 2 * K4, hpa(last), rw()),
        Err(PagingError::HpaOutOfRange {
            hpa: hpa(last),
            size: 2 * K4
        })
    );
    assert_eq!(t.translate(gpa(u64::MAX)), None);
    assert_eq!(frames(&t), 1);
}

#[test]
fn attributes_the_format_cannot_express_are_refused() {
    let mut t = table::<Fake2M>();
    let write_only = Attrs::normal(Perms {
        read: false,
        write: true,
        execute: false,
    });
    assert_eq!(
        t.map(gpa(0), K4, hpa(RAM), write_only),
        Err(PagingError::Unsupported { attrs: write_only })
    );
}
