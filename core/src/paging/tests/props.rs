//! Random sequences of operations against a page-by-page model: `translate` must agree with the
//! model after every step, and refused operations must change nothing.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::fake::{Fake2M, VecMemory};
use super::{K4, M2, RAM, gpa, hpa};
use crate::paging::{Attrs, PageTable, PagingError, Perms};

/// Operations stay inside four 2 MiB blocks, so blocks, splits and page tables all occur.
const PAGES: u64 = 4 * M2 / K4;
const BLOCK: u64 = M2 / K4;

#[derive(Debug, Clone)]
enum Op {
    Map {
        page: u64,
        pages: u64,
        to: u64,
        perms: Perms,
    },
    Unmap {
        page: u64,
        pages: u64,
    },
    WriteProtect {
        page: u64,
        pages: u64,
    },
    Remap {
        page: u64,
        pages: u64,
        to: u64,
    },
}

/// A page range inside the window, often starting on a block and often covering whole blocks.
fn range() -> impl Strategy<Value = (u64, u64)> {
    let blocks = PAGES / BLOCK;
    let start = prop_oneof![0..PAGES, (0..blocks).prop_map(|b| b * BLOCK)];
    start.prop_flat_map(|page| {
        let room = PAGES - page;
        let pages = prop_oneof![1..=room.min(16), 1..=room, Just(room.min(BLOCK))];
        (Just(page), pages)
    })
}

/// A host page: mostly one that keeps the guest's 2 MiB alignment, so blocks get used.
fn target(page: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => (0..4u64).prop_map(move |block| RAM / K4 + block * BLOCK + page),
        1 => (0..PAGES * 8).prop_map(|p| RAM / K4 + p),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let perms = (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(r, w, x)| Perms {
        read: r,
        write: w,
        execute: x,
    });
    prop_oneof![
        4 => (range(), perms).prop_flat_map(|((page, pages), perms)| {
            target(page).prop_map(move |to| Op::Map { page, pages, to, perms })
        }),
        1 => range().prop_map(|(page, pages)| Op::Unmap { page, pages }),
        2 => range().prop_map(|(page, pages)| Op::WriteProtect { page, pages }),
        2 => range().prop_flat_map(|(page, pages)| {
            target(page).prop_map(move |to| Op::Remap { page, pages, to })
        }),
    ]
}

/// Guest page → (host page, attributes).
type Model = BTreeMap<u64, (u64, Attrs)>;

/// What the model says `op` returns, applying it if it succeeds.
fn apply(model: &mut Model, op: &Op) -> Result<(), PagingError> {
    let at = |page: u64| gpa(page * K4);
    match *op {
        Op::Map {
            page,
            pages,
            to,
            perms,
        } => {
            let attrs = Attrs::normal(perms);
            if perms.write && !perms.read {
                return Err(PagingError::Unsupported { attrs });
            }
            let clash = (page..page + pages)
                .find(|p| model.get(p).is_some_and(|&m| m != (to + p - page, attrs)));
            if let Some(p) = clash {
                return Err(PagingError::Overlaps { gpa: at(p) });
            }
            for p in page..page + pages {
                model.insert(p, (to + p - page, attrs));
            }
        }
        Op::Unmap { page, pages } => {
            for p in page..page + pages {
                model.remove(&p);
            }
        }
        Op::WriteProtect { page, pages } => {
            for (_, (_, attrs)) in model.range_mut(page..page + pages) {
                attrs.perms = attrs.perms.without_write();
            }
        }
        Op::Remap { page, pages, to } => {
            if let Some(p) = (page..page + pages).find(|p| !model.contains_key(p)) {
                return Err(PagingError::NotMapped { gpa: at(p) });
            }
            for (p, (host, _)) in model.range_mut(page..page + pages) {
                *host = to + p - page;
            }
        }
    }
    Ok(())
}

fn run(t: &mut PageTable<Fake2M, VecMemory>, op: &Op) -> Result<(), PagingError> {
    match *op {
        Op::Map {
            page,
            pages,
            to,
            perms,
        } => t.map(
            gpa(page * K4),
            pages * K4,
            hpa(to * K4),
            Attrs::normal(perms),
        ),
        Op::Unmap { page, pages } => t.unmap(gpa(page * K4), pages * K4),
        Op::WriteProtect { page, pages } => t.write_protect(gpa(page * K4), pages * K4),
        Op::Remap { page, pages, to } => t.remap(gpa(page * K4), pages * K4, hpa(to * K4)),
    }
}

proptest! {
    #[test]
    fn translate_agrees_with_a_page_model(ops in prop::collection::vec(op(), 1..24)) {
        let mut t = PageTable::<Fake2M, _>::new(VecMemory::new(10_000)).unwrap();
        let mut model = Model::new();
        for op in &ops {
            let before = t.memory.frames.clone();
            let expected = apply(&mut model, op);
            prop_assert_eq!(run(&mut t, op), expected, "{:?}", op);
            if expected.is_err() {
                prop_assert!(t.memory.frames == before, "refused {:?} changed tables", op);
            }
            for page in 0..PAGES + 8 {
                let want = model.get(&page).map(|&(host, attrs)| (hpa(host * K4 + 0x18), attrs));
                prop_assert_eq!(t.translate(gpa(page * K4 + 0x18)), want, "page {:#x}", page);
            }
        }
    }
}
