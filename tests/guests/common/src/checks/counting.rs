//! The everyday guest's numbered lines: `count N`, or with `hashed=1` `count N h=H` where H is a
//! running FNV-1a hash of the stream, so an output oracle sees any line that differs. `dirty=N`
//! writes N pages of a 1 MiB buffer before each line and folds a word written earlier into the
//! hash, so a copy of the guest whose memory missed a write prints other lines (re-protection's
//! dirty-page tracking). `via=hypercall` sends each line with one CONSOLE_WRITE hypercall
//! instead of a UART write per byte, and reads the time with TIME_NOW before each line, so the
//! partition exits mostly on hypercalls (the recovery campaigns' hypercall-heavy workload); it
//! prints `ERROR: time went back` if a read is earlier than the one before (time must survive a
//! hypervisor recovery), and never the time itself, which differs from run to run. `pace_us=N`
//! sleeps N microseconds on the virtual timer after each line: a long, mostly idle stream whose
//! inputs are timer interrupts (the workload of fault tolerance across boards, whose tests act
//! on the run while it prints).

use core::sync::atomic::{AtomicU32, Ordering};

use crate::Runtime;
use crate::console::{print_line, write_line};
use crate::info::arg;

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

pub fn count_lines<R: Runtime>(count: u32, sleep_ns: fn(u64)) {
    let info = R::partition_info();
    let pace_ns = info.number::<u64>("pace_us").unwrap_or(0) * 1000;
    let hashed = info.number::<u32>("hashed") == Some(1);
    let dirty_pages: u32 = info.number("dirty").unwrap_or(0);
    let hypercalls = arg(info.args(), "via") == Some("hypercall");
    // Each line through the UART, or through CONSOLE_WRITE.
    let line = |args: core::fmt::Arguments<'_>| {
        if hypercalls {
            write_line::<R>(args);
        } else {
            print_line::<R>(args);
        }
    };
    let mut hash: u32 = 0x811c_9dc5;
    let mut last_time = 0;
    for i in 1..=count {
        if hypercalls {
            let now = R::time_now();
            if now < last_time {
                line(format_args!(
                    "ERROR: time went back from {last_time} to {now} ns"
                ));
            }
            last_time = now;
        }
        if dirty_pages > 0 {
            hash = (hash ^ dirty(i, dirty_pages)).wrapping_mul(0x0100_0193);
        }
        if hashed {
            // Carried from line to line.
            hash = fold(hash, i);
            line(format_args!("count {i} h={hash:08x}"));
        } else {
            line(format_args!("count {i}"));
        }
        if pace_ns > 0 {
            sleep_ns(pace_ns);
        }
    }
}
