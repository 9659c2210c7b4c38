//! The hostile guests' plain accesses to memory their partition does not own.

use crate::Runtime;
use crate::say;

/// Outside every partition's memory on every board.
const OUTSIDE: u64 = 0x1000_0000;

/// Reads or writes memory outside the partition, as `finally` (`read` or `write`) says, with the
/// architecture's plain load and store; the hypervisor must stop the partition there. Returns
/// false, having done nothing, for any other `finally`.
pub fn access_outside<R: Runtime>(
    finally: &str,
    read: fn(u64) -> u64,
    write: fn(u64, u64),
) -> bool {
    match finally {
        "write" => {
            say!(R, "writing outside my memory at {OUTSIDE:#x}");
            write(OUTSIDE, 0x6666);
        }
        "read" => {
            say!(R, "reading outside my memory at {OUTSIDE:#x}");
            let v = read(OUTSIDE);
            say!(R, "read {v:#x}");
        }
        _ => return false,
    }
    true
}
