//! Time on a PC: the TSC, and idling on the APIC's TSC-deadline timer where the CPU has it.

use tandem_hw::clock::Clock;

use crate::io::rdtsc;
use crate::{apic, time};

pub struct PcClock {
    /// This CPU can halt until a deadline (APIC timer in TSC-deadline mode) instead of spinning.
    pub can_halt: bool,
}

impl Clock for PcClock {
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

    fn counter(&self) -> u64 {
        rdtsc()
    }
}
