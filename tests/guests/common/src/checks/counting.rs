//! The everyday guest's numbered lines: `count N`, or with `hashed=1` `count N h=H` where H is a
//! running FNV-1a hash of the stream, so an output oracle sees any line that differs. `dirty=N`
//! writes N pages of a 1 MiB buffer before each line and folds a word written earlier into the
//! hash, so a copy of the guest whose memory missed a write prints other lines (re-protection's
//! dirty-page tracking).

use core::sync::atomic::{AtomicU32, Ordering};

use crate::{Runtime, say};

/// Pages of the buffer `dirty=N` writes, and 32-bit words per page.
const PAGES: usize = 256;
const WORDS: usize = 1024;
#[unsafe(link_section = ".noinit.dirty")]
static BUFFER: [AtomicU32; PAGES * WORDS] = [const { AtomicU32::new(0) }; PAGES * WORDS];

/// Writes `pages` pages of the buffer for line `i`, and returns a word an earlier line wrote.
fn dirty(i: u32, pages: u32) -> u32 {
    let i = i as usize;
    for j in 0..pages as usize {
        let page = (i * 31 + j * 17) % PAGES;
        BUFFER[page * WORDS + i % WORDS].store((i ^ j) as u32 | 1, Ordering::Relaxed);
    }
    let back = i.saturating_sub(3);
    BUFFER[((back * 31) % PAGES) * WORDS + back % WORDS].load(Ordering::Relaxed)
}

/// One FNV-1a step over a 32-bit word.
fn fold(hash: u32, word: u32) -> u32 {
    word.to_le_bytes()
        .iter()
        .fold(hash, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

pub fn count_lines<R: Runtime>(count: u32) {
    let info = R::partition_info();
    let hashed = info.number::<u32>("hashed") == Some(1);
    let dirty_pages: u32 = info.number("dirty").unwrap_or(0);
    let mut hash: u32 = 0x811c_9dc5;
    for i in 1..=count {
        if dirty_pages > 0 {
            hash = (hash ^ dirty(i, dirty_pages)).wrapping_mul(0x0100_0193);
        }
        if hashed {
            // Carried from line to line.
            hash = fold(hash, i);
            say!(R, "count {i} h={hash:08x}");
        } else {
            say!(R, "count {i}");
        }
    }
}
