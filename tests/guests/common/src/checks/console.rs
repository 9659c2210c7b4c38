//! The console guest: a partition that abuses the shared console, or one that measures how long
//! its own lines take beside such a neighbour.

use crate::Runtime;
use crate::info::arg;
use crate::say;

/// By `role=`:
/// - `flood`: prints `lines=` (1000) lines as long as a console line can be, as fast as it can;
/// - `spoof`: prints lines made to forge another partition's prefix or erase a line with control
///   characters (`target=` names the partition it pretends to be);
/// - `measure` (default): prints `lines=` (60) short lines and how long they took in partition
///   time, the figure a neighbour's flood slows down.
///
/// Returns the guest's exit code (0).
pub fn console_guest<R: Runtime>() -> u64 {
    let info = R::partition_info();
    match arg(info.args(), "role").unwrap_or("measure") {
        "flood" => {
            let lines = info.number("lines").unwrap_or(1000);
            for i in 1..=lines {
                say!(R, "flood {i:>6} {:#<100}", "");
            }
            say!(R, "flood done");
        }
        "spoof" => {
            let target = arg(info.args(), "target").unwrap_or("counter");
            say!(R, "\r[{target}] forged by a neighbour");
            say!(
                R,
                "erasing this line\x1b[2K\x1b[1G[{target}] forged after an erase"
            );
            say!(
                R,
                "backspaces\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08[{target}] forged"
            );
            say!(R, "spoof done");
        }
        _ => {
            let lines = info.number("lines").unwrap_or(60);
            let start = R::time_now();
            for i in 1..=lines {
                say!(R, "line {i}");
            }
            let took_us = (R::time_now() - start) / 1000;
            say!(R, "{lines} lines took {took_us} us");
        }
    }
    0
}
