//! The portable core's view of this machine.

use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use tandem_core::addr::GuestPhysAddr;
use tandem_core::config::{Board, MAX_CPUS, MemoryRegion};
use tandem_core::platform::Platform;
use tandem_core::power::PowerStatus;
use tandem_core::report::Notice;

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

/// A vCPU's power state, per physical CPU, for PSCI CPU_ON between vCPUs of one partition.
pub const OFF: u8 = 0;
pub const STARTING: u8 = 1;
pub const ON: u8 = 2;

pub struct Mailbox {
    pub state: AtomicU8,
    pub entry: AtomicU64,
    pub context: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const IDLE: Mailbox = Mailbox {
    state: AtomicU8::new(OFF),
    entry: AtomicU64::new(0),
    context: AtomicU64::new(0),
};
pub static MAILBOXES: [Mailbox; MAX_CPUS] = [IDLE; MAX_CPUS];

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
        let Some(cpu) = crate::hypervisor::cpu_of(partition, vcpu) else {
            return PowerStatus::InvalidParameters;
        };
        let mailbox = &MAILBOXES[cpu];
        mailbox.entry.store(entry, Ordering::Relaxed);
        mailbox.context.store(context, Ordering::Relaxed);
        match mailbox
            .state
            .compare_exchange(OFF, STARTING, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                // SAFETY: SEV only wakes CPUs waiting in WFE.
                unsafe { core::arch::asm!("sev", options(nomem, nostack)) };
                PowerStatus::Success
            }
            Err(_) => PowerStatus::AlreadyOn,
        }
    }

    fn vcpu_running(&self, partition: u32, vcpu: u32) -> bool {
        crate::hypervisor::cpu_of(partition, vcpu)
            .is_some_and(|cpu| MAILBOXES[cpu].state.load(Ordering::Acquire) != OFF)
    }
}
