//! Garbage hypercalls: each must return its error status, never fault or stop the partition.

use crate::Runtime;
use crate::abi::{CONSOLE_WRITE, E_FAULT, E_INVALID, E_NOSYS, PARTITION_INFO, TIMER_SET};
use crate::say;

/// Makes the bad calls, with `outside` an address outside the partition's memory and `inside` one
/// in it; prints each wrong status and a summary, and returns how many were wrong.
pub fn bad_hypercalls<R: Runtime>(outside: u64, inside: u64) -> usize {
    let attempts: [(&str, u64, [u64; 4], i64); 6] = [
        ("unknown call", 0x7777, [0; 4], E_NOSYS),
        (
            "console write outside memory",
            CONSOLE_WRITE,
            [outside, 16, 0, 0],
            E_FAULT,
        ),
        (
            "console write too long",
            CONSOLE_WRITE,
            [inside, 1 << 30, 0, 0],
            E_INVALID,
        ),
        (
            "console write wrapping",
            CONSOLE_WRITE,
            [u64::MAX - 4, 16, 0, 0],
            E_FAULT,
        ),
        (
            "partition info buffer too small",
            PARTITION_INFO,
            [inside, 8, 0, 0],
            E_INVALID,
        ),
        (
            "timer on an exception vector",
            TIMER_SET,
            [1000, 13, 0, 0],
            E_INVALID,
        ),
    ];
    let mut failures = 0;
    for (what, nr, args, expected) in attempts {
        let (status, _) = R::hypercall(nr, args);
        if status != expected {
            say!(R, "FAIL: {what}: status {status}, expected {expected}");
            failures += 1;
        }
    }
    say!(
        R,
        "bad hypercalls rejected with errors: {}",
        attempts.len() - failures
    );
    failures
}
