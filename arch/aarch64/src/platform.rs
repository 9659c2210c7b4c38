//! The portable core's view of this machine.

use tandem_core::addr::GuestPhysAddr;
use tandem_core::config::{Board, MemoryRegion};
use tandem_core::platform::Platform;
use tandem_core::power::PowerStatus;
use tandem_core::report::Notice;
use tandem_hw::bringup;

use crate::{console, time};

pub struct VirtPlatform {
    /// Where each partition finds its PL011 (board data, named in its device tree).
    uart: Option<GuestPhysAddr>,
}

impl VirtPlatform {
    pub fn new(board: &Board) -> Self {
        Self {
            uart: board.guest_uart.map(|u| u.base),
        }
    }
}

impl Platform for VirtPlatform {
    fn now_ns(&self) -> u64 {
        time::now_ns()
    }

    fn wait_until_ns(&self, deadline_ns: u64) {
        time::wait_until_ns(deadline_ns);
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

    fn uart_mmio(&self) -> Option<GuestPhysAddr> {
        self.uart
    }

    fn start_vcpu(&self, partition: u32, vcpu: u32, entry: u64, context: u64) -> PowerStatus {
        let status = bringup::start_vcpu(partition, vcpu, entry, context);
        if status == PowerStatus::Success {
            // SAFETY: SEV only wakes CPUs waiting in WFE.
            unsafe { core::arch::asm!("sev", options(nomem, nostack)) };
        }
        status
    }

    fn vcpu_running(&self, partition: u32, vcpu: u32) -> bool {
        bringup::vcpu_running(partition, vcpu)
    }
}
