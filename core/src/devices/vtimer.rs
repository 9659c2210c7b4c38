//! A one-shot virtual timer armed by the `TIMER_SET` hypercall.

const DISARMED: u64 = u64::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct VirtualTimer {
    deadline_ns: u64,
    vector: u8,
}

impl Default for VirtualTimer {
    fn default() -> Self {
        Self::new()
    }
}

impl VirtualTimer {
    pub const fn new() -> Self {
        Self {
            deadline_ns: DISARMED,
            vector: 0,
        }
    }

    pub fn arm(&mut self, now_ns: u64, delay_ns: u64, vector: u8) {
        self.deadline_ns = now_ns.saturating_add(delay_ns).min(DISARMED - 1);
        self.vector = vector;
    }

    pub fn disarm(&mut self) {
        self.deadline_ns = DISARMED;
    }

    pub fn deadline(&self) -> Option<u64> {
        (self.deadline_ns != DISARMED).then_some(self.deadline_ns)
    }

    /// The vector to raise if the deadline has passed, leaving the timer armed.
    pub fn due(&self, now_ns: u64) -> Option<u8> {
        (self.deadline_ns <= now_ns).then_some(self.vector)
    }

    /// The vector to raise if the deadline has passed; the timer is then disarmed.
    pub fn take_due(&mut self, now_ns: u64) -> Option<u8> {
        if self.deadline_ns <= now_ns {
            self.disarm();
            Some(self.vector)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_once_at_the_deadline() {
        let mut t = VirtualTimer::new();
        assert_eq!(t.take_due(0), None);
        t.arm(100, 50, 0x20);
        assert_eq!(t.deadline(), Some(150));
        assert_eq!(t.take_due(149), None);
        assert_eq!(t.take_due(150), Some(0x20));
        assert_eq!(t.take_due(1000), None);
    }

    #[test]
    fn huge_delays_saturate_instead_of_disarming() {
        let mut t = VirtualTimer::new();
        t.arm(10, u64::MAX, 0x30);
        assert!(t.deadline().is_some());
    }
}
