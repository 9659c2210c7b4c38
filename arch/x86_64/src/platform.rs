//! The portable core's view of this machine.

use tandem_core::config::MemoryRegion;
use tandem_core::platform::Platform;
use tandem_core::report::Notice;

use crate::{apic, console, time};

pub struct PcPlatform {
    /// This CPU can halt until a deadline (APIC timer in TSC-deadline mode) instead of spinning.
    pub can_halt: bool,
}

/// Host address of `len` bytes at `offset` in `region`, if they lie inside it.
fn host(region: &MemoryRegion, offset: u64, len: usize) -> Option<u64> {
    let end = offset.checked_add(len as u64)?;
    (end <= region.size).then(|| region.hpa.raw() + offset)
}

impl Platform for PcPlatform {
    fn now_ns(&self) -> u64 {
        time::now_ns()
    }

    fn wait_until_ns(&self, deadline_ns: u64) {
        if self.can_halt {
            apic::sleep_until(time::tsc_at(deadline_ns));
        } else {
            time::spin_until_ns(deadline_ns);
        }
    }

    fn console_line(&self, partition: &str, line: &[u8]) {
        console::partition_line(partition, line);
    }

    fn notice(&self, partition: &str, notice: Notice) {
        defmt::warn!("partition {=str}: {}", partition, notice);
    }

    fn read_guest(&self, region: &MemoryRegion, offset: u64, buf: &mut [u8]) {
        if let Some(src) = host(region, offset, buf.len()) {
            // SAFETY: the range lies inside one of the partition's regions (checked above), which
            // is identity-mapped host memory the partition owns.
            unsafe { core::ptr::copy_nonoverlapping(src as *const u8, buf.as_mut_ptr(), buf.len()) }
        }
    }

    fn write_guest(&self, region: &MemoryRegion, offset: u64, data: &[u8]) {
        if let Some(dst) = host(region, offset, data.len()) {
            // SAFETY: as in `read_guest`.
            unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), dst as *mut u8, data.len()) }
        }
    }
}
