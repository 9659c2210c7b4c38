//! The portable core's view of this machine.

use tandem_core::config::MemoryRegion;
use tandem_core::platform::Platform;
use tandem_core::report::Notice;

use crate::{apic, console, time};

pub struct PcPlatform {
    /// This CPU can halt until a deadline (APIC timer in TSC-deadline mode) instead of spinning.
    pub can_halt: bool,
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
        tandem_hw::report::notice(partition, notice);
    }

    fn read_guest(&self, region: &MemoryRegion, offset: u64, buf: &mut [u8]) {
        tandem_hw::guest_memory::read(region, offset, buf);
    }

    fn write_guest(&self, region: &MemoryRegion, offset: u64, data: &[u8]) {
        tandem_hw::guest_memory::write(region, offset, data);
    }
}
