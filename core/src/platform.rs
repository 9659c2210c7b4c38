//! What a physical CPU provides to the portable exit loop besides the vCPU itself.

use crate::config::MemoryRegion;
use crate::report::Notice;

/// Time, idling, guest memory and console output of the machine.
pub trait Platform {
    /// Monotonic time since boot, in nanoseconds.
    fn now_ns(&self) -> u64;
    /// Idles the physical CPU until `deadline_ns` has passed.
    fn wait_until_ns(&self, deadline_ns: u64);
    /// Prints one line of a partition's console, prefixed with its name.
    fn console_line(&self, partition: &str, line: &[u8]);
    /// Reports guest misbehaviour that did not stop the partition.
    fn notice(&self, partition: &str, notice: Notice);
    /// Copies `buf.len()` bytes from `region` at `offset`. The core has checked that the range lies
    /// inside the region; implementations may refuse (and fill nothing) if it does not.
    fn read_guest(&self, region: &MemoryRegion, offset: u64, buf: &mut [u8]);
    /// Copies `data` into `region` at `offset`, under the same rule as [`Platform::read_guest`].
    fn write_guest(&self, region: &MemoryRegion, offset: u64, data: &[u8]);
}
