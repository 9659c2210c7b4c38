//! An Arm generic timer's comparator, emulated: the EL1 physical timer a partition sees (Arm ARM
//! D11.2.4, "Timers"). Its registers hold a compare value and a control word; the timer condition
//! is met once the counter the guest reads reaches the compare value, and its interrupt is a level
//! that follows the condition unless masked. Counter values are the guest's own (whatever its
//! counter register reads); the backend says what that is at each access.

/// CNTP_CTL_EL0 bits (Arm ARM D19.11, CNTP_CTL_EL0): the guest's ENABLE and IMASK, and ISTATUS,
/// read-only, the timer condition.
const ENABLE: u64 = 1 << 0;
const IMASK: u64 = 1 << 1;
const ISTATUS: u64 = 1 << 2;

/// Which register of the timer an access names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerRegister {
    /// CNTP_CTL_EL0.
    Control,
    /// CNTP_CVAL_EL0: the compare value.
    CompareValue,
    /// CNTP_TVAL_EL0: the compare value as a signed 32-bit distance from the counter.
    TimerValue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct PhysicalTimer {
    /// ENABLE and IMASK as the guest wrote them (both 0 at reset).
    ctl: u64,
    /// The compare value (UNKNOWN at reset on hardware; 0 here).
    cval: u64,
}

impl PhysicalTimer {
    pub const fn new() -> Self {
        Self { ctl: 0, cval: 0 }
    }

    /// What a read of `reg` returns when the counter reads `now`.
    pub fn read(&self, reg: TimerRegister, now: u64) -> u64 {
        match reg {
            TimerRegister::Control => self.ctl | if self.condition(now) { ISTATUS } else { 0 },
            TimerRegister::CompareValue => self.cval,
            // The low 32 bits of CVAL - counter, read as a signed value (D11.2.4).
            TimerRegister::TimerValue => u64::from(self.cval.wrapping_sub(now) as u32),
        }
    }

    /// A write of `value` to `reg` when the counter reads `now`.
    pub fn write(&mut self, reg: TimerRegister, value: u64, now: u64) {
        match reg {
            TimerRegister::Control => self.ctl = value & (ENABLE | IMASK),
            TimerRegister::CompareValue => self.cval = value,
            // CVAL = counter + the sign-extended low 32 bits of the value (D11.2.4).
            TimerRegister::TimerValue => {
                self.cval = now.wrapping_add(value as u32 as i32 as i64 as u64);
            }
        }
    }

    /// The timer condition: enabled, and the counter has reached the compare value.
    fn condition(&self, now: u64) -> bool {
        self.ctl & ENABLE != 0 && now >= self.cval
    }

    /// The level of the timer's interrupt when the counter reads `now`.
    pub fn asserted(&self, now: u64) -> bool {
        self.condition(now) && self.ctl & IMASK == 0
    }

    /// The counter value at which the interrupt will assert, if it is armed (enabled and not
    /// masked); it may already have passed.
    pub fn deadline(&self) -> Option<u64> {
        (self.ctl & (ENABLE | IMASK) == ENABLE).then_some(self.cval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TimerRegister::*;

    #[test]
    fn fires_at_the_compare_value_as_a_level_the_mask_hides() {
        let mut t = PhysicalTimer::new();
        assert!(!t.asserted(u64::MAX), "disabled at reset");
        t.write(CompareValue, 1000, 0);
        t.write(Control, ENABLE, 0);
        assert_eq!(t.deadline(), Some(1000));
        assert!(!t.asserted(999));
        assert!(t.asserted(1000));
        assert_eq!(t.read(Control, 1000), ENABLE | ISTATUS);
        t.write(Control, ENABLE | IMASK, 1000);
        assert!(!t.asserted(1000), "masked");
        assert_eq!(t.read(Control, 1000), ENABLE | IMASK | ISTATUS);
        assert_eq!(t.deadline(), None);
        t.write(Control, ENABLE, 1000);
        t.write(CompareValue, 2000, 1000);
        assert!(
            !t.asserted(1000),
            "the line drops when the compare value moves ahead"
        );
    }

    #[test]
    fn the_timer_value_is_a_signed_distance() {
        let mut t = PhysicalTimer::new();
        t.write(TimerValue, 500, 10_000);
        assert_eq!(t.read(CompareValue, 0), 10_500);
        assert_eq!(t.read(TimerValue, 10_200), 300);
        assert_eq!(t.read(TimerValue, 10_600) as u32 as i32, -100);
        t.write(TimerValue, u64::from(-200i32 as u32), 10_000);
        assert_eq!(t.read(CompareValue, 0), 9_800);
        assert!(!t.asserted(10_000), "still disabled");
    }

    #[test]
    fn only_enable_and_imask_are_written() {
        let mut t = PhysicalTimer::new();
        t.write(Control, u64::MAX, 0);
        assert_eq!(t.read(Control, 0), ENABLE | IMASK | ISTATUS);
    }
}
