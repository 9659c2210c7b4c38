//! Time on one CPU, as a backend keeps it, and the `embedded-hal` delay drivers wait with.

use embedded_hal::delay::DelayNs;

/// Time as the hypervisor keeps it on one CPU.
pub trait Clock {
    /// Monotonic time since boot, in nanoseconds.
    fn now_ns(&self) -> u64;
    /// Idles this CPU until `deadline_ns` has passed.
    fn wait_until_ns(&self, deadline_ns: u64);
    /// Idles this CPU until `deadline_ns` has passed or an interrupt is pending for it (a kick,
    /// [`crate::kick`]), whichever comes first; it may also return early for no reason.
    fn wait_once_until_ns(&self, deadline_ns: u64) {
        self.wait_until_ns(deadline_ns);
    }
    /// The raw hardware counter (x86 TSC, aarch64 CNTPCT_EL0), for log lines that measure boot
    /// time in the emulators' exact units.
    fn counter(&self) -> u64;
}

/// Waits through a [`Clock`], for drivers written against `embedded-hal`'s [`DelayNs`] (start-up
/// sequences, and board drivers that can then be swapped and host-tested).
pub struct ClockDelay<C: Clock>(pub C);

impl<C: Clock> DelayNs for ClockDelay<C> {
    fn delay_ns(&mut self, ns: u32) {
        self.0
            .wait_until_ns(self.0.now_ns().saturating_add(ns.into()));
    }
}
