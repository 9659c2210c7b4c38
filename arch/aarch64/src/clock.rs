//! Time on aarch64: the generic timer's physical counter, and idling on the EL2 hypervisor timer.

use tandem_hw::clock::Clock;

use crate::time;

pub struct VirtClock;

impl Clock for VirtClock {
    fn now_ns(&self) -> u64 {
        time::now_ns()
    }

    fn wait_until_ns(&self, deadline_ns: u64) {
        time::wait_until_ns(deadline_ns);
    }

    fn wait_once_until_ns(&self, deadline_ns: u64) {
        time::wait_once_until_ns(deadline_ns);
    }

    fn counter(&self) -> u64 {
        time::counter()
    }
}
