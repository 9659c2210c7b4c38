//! Sleeping until a timer interrupt: the EL1 virtual or physical timer, or the `TIMER_SET`
//! hypercall.

use core::arch::asm;

use crate::cpu::{counter_frequency, virtual_count};
use crate::{Guest, Runtime, gic, ticks};

/// Sleeps until the virtual timer fires `ns` from now.
pub fn sleep_ns(ns: u64) {
    let start = ticks();
    let deadline = virtual_count()
        + (u128::from(ns) * u128::from(counter_frequency())).div_ceil(1_000_000_000) as u64;
    // SAFETY: the guest's own virtual timer: compare value, then enabled and unmasked.
    unsafe {
        asm!("msr cntv_cval_el0, {}", in(reg) deadline, options(nomem, nostack));
        asm!("msr cntv_ctl_el0, {}", in(reg) 1u64, options(nomem, nostack));
        asm!("isb", options(nomem, nostack));
    }
    wait_for_tick(start);
}

/// Sleeps until the physical timer fires `ns` from now, armed through its timer value
/// (CNTP_TVAL_EL0, a distance from the physical counter).
pub fn sleep_physical_ns(ns: u64) {
    let start = ticks();
    let distance =
        (u128::from(ns) * u128::from(counter_frequency())).div_ceil(1_000_000_000) as u64;
    // SAFETY: the guest's own physical timer: timer value, then enabled and unmasked.
    unsafe {
        asm!("msr cntp_tval_el0, {}", in(reg) distance, options(nomem, nostack));
        asm!("msr cntp_ctl_el0, {}", in(reg) 1u64, options(nomem, nostack));
        asm!("isb", options(nomem, nostack));
    }
    wait_for_tick(start);
}

/// Sleeps until the hypervisor raises [`gic::HYPERCALL_TIMER`], asked with `TIMER_SET` for `ns`
/// from now.
pub fn sleep_hypercall_ns(ns: u64) {
    let start = ticks();
    let (status, _) = Guest::timer_set(ns, gic::HYPERCALL_TIMER.into());
    assert_eq!(status, 0, "TIMER_SET refused");
    wait_for_tick(start);
}

/// WFI with IRQs masked (WFI still wakes on a pending interrupt), unmask to take it, and repeat
/// until a tick came after `start`.
fn wait_for_tick(start: u64) {
    while ticks() == start {
        // SAFETY: masking, waiting and unmasking IRQs only changes when the handler runs.
        unsafe {
            asm!(
                "msr daifset, #2",
                "wfi",
                "msr daifclr, #2",
                "isb",
                options(nomem, nostack)
            )
        };
    }
}
