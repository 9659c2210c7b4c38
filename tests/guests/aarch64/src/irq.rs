//! The guest's IRQ handler: timer interrupts count as ticks, any other interrupt is recorded in
//! the order it was taken (the PMU's with the overflow flags it clears).

use core::arch::asm;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::gic;

const LOG: usize = 32;

static TICKS: AtomicU64 = AtomicU64::new(0);
static TAKEN: [AtomicU32; LOG] = [const { AtomicU32::new(0) }; LOG];
static TAKEN_COUNT: AtomicUsize = AtomicUsize::new(0);
static OVERFLOWS: AtomicU64 = AtomicU64::new(0);

/// Timer interrupts taken: the virtual and physical timers' and the one `TIMER_SET` raises.
pub fn ticks() -> u64 {
    TICKS.load(Ordering::SeqCst)
}

/// The PMU overflow flags the PMU's interrupts found set (PMOVSSET_EL0 bits, ORed together).
pub fn overflows() -> u64 {
    OVERFLOWS.load(Ordering::SeqCst)
}

/// The other interrupts taken so far, in order (the first 32).
pub fn taken() -> impl Iterator<Item = u32> {
    let n = TAKEN_COUNT.load(Ordering::SeqCst).min(LOG);
    TAKEN[..n].iter().map(|t| t.load(Ordering::SeqCst))
}

#[unsafe(no_mangle)]
extern "C" fn guest_irq() {
    let ack = gic::acknowledge();
    let intid = ack.intid;
    match intid {
        gic::VTIMER => {
            // Disabling the timer drops its interrupt line before the end of interrupt.
            // SAFETY: the guest's own virtual timer.
            unsafe { asm!("msr cntv_ctl_el0, xzr", options(nomem, nostack)) };
            TICKS.fetch_add(1, Ordering::SeqCst);
        }
        gic::PTIMER => {
            // SAFETY: the guest's own physical timer, as the virtual one above.
            unsafe { asm!("msr cntp_ctl_el0, xzr", options(nomem, nostack)) };
            TICKS.fetch_add(1, Ordering::SeqCst);
        }
        gic::HYPERCALL_TIMER => {
            TICKS.fetch_add(1, Ordering::SeqCst);
        }
        gic::PMU => {
            // The overflow interrupt is a level: its flags are cleared (PMOVSCLR_EL0) before the
            // end of interrupt, or it is taken again at once. Recorded with the others too.
            let flags: u64;
            // SAFETY: only a partition that uses the PMU takes its interrupt; this clears the
            // flags it found.
            unsafe {
                asm!("mrs {f}, pmovsclr_el0", "msr pmovsclr_el0, {f}", "isb", f = out(reg) flags,
                     options(nomem, nostack))
            };
            OVERFLOWS.fetch_or(flags, Ordering::SeqCst);
            record(intid);
        }
        _ => record(intid),
    }
    if intid < 1020 {
        gic::end(ack);
    }
}

fn record(intid: u32) {
    let n = TAKEN_COUNT.fetch_add(1, Ordering::SeqCst);
    if let Some(slot) = TAKEN.get(n) {
        slot.store(intid, Ordering::SeqCst);
    }
}
