//! Stopping the other CPUs for a recovery (recovery.md 6.2): a Group 0 SGI, which the CPU takes
//! as a FIQ even while it loops at EL2 with IRQs masked.
//!
//! Why a FIQ rather than GICv3 pseudo-NMI. EL2 code runs with PSTATE.I set (every exception to
//! EL2 sets it, and the hypervisor never clears it: its interrupts end a guest's run and are
//! acknowledged in the exit path, not taken at EL2), so a CPU looping at EL2 takes no IRQ.
//! Pseudo-NMI would run EL2 with PSTATE.I clear and ICC_PMR_EL1 masking the ordinary priorities
//! instead: a PMR write at each world switch in both directions (the guest must exit on every
//! priority), another around each WFI of the idle wait (a WFI ends only for an interrupt the
//! priority mask lets through to the PE, IHI 0069 4.8 and Arm ARM D1.16.2), and the acknowledge
//! loop would have to open the mask and expect the stop request among the others. QEMU 7.2 has
//! no FEAT_NMI. On QEMU `virt` without EL3 the GIC has a single security state (GICD_CTLR.DS =
//! 1): Group 0 is the hypervisor's and is signalled as FIQ (IHI 0069, 4.6.2), which PSTATE.F masks
//! independently of PSTATE.I. So EL2 keeps PSTATE.I set, as before, and clears PSTATE.F once a
//! CPU runs partitions with recovery on (`allow`) and at each exit from the guest (`entry`); the
//! stop request and the watchdog's tick (`watchdog`) are the only Group 0 interrupts, told apart
//! by [`STOP_PENDING`] and then the acknowledged INTID. A CPU spinning with IRQs masked still
//! takes them; one with every DAIF bit set (the first instructions of an exception handler) does not, and
//! the recovery's owner gives up after `QUIESCE_NS` with a full reset. Where EL3 firmware keeps
//! Group 0 for itself (SCR_EL3.FIQ = 1 on most hardware), this would need pseudo-NMI or SDEI.

use core::sync::atomic::{AtomicU32, Ordering};

use tandem_core::config::MAX_CPUS;

use crate::gic;

/// Set while a recovery stops CPUs: the FIQ vector (`entry`) sends its CPU to the follower
/// path. Clear, a FIQ is a stale stop request (one left pending on a CPU that failed by itself
/// meanwhile), ended at once.
#[unsafe(no_mangle)]
static STOP_PENDING: AtomicU32 = AtomicU32::new(0);

/// Sends the stop request to every CPU in `mask`.
pub fn stop_cpus(mask: u32) {
    STOP_PENDING.store(1, Ordering::Release);
    for cpu in (0..MAX_CPUS).filter(|&c| mask & (1 << c) != 0) {
        gic::send_stop(cpu);
    }
}

/// Every CPU the recovery stopped has arrived (`Backend::stop_done`, before any is released):
/// a FIQ from now on is a stale stop request or a watchdog tick, not a stop.
pub fn stops_over() {
    STOP_PENDING.store(0, Ordering::Release);
}

/// Runs `f` with stop requests held off (PSTATE.F set), then puts PSTATE.F back as it was.
pub fn without_stops<R>(f: impl FnOnce() -> R) -> R {
    let daif: u64;
    // SAFETY: reads PSTATE's interrupt masks.
    unsafe { core::arch::asm!("mrs {}, daif", out(reg) daif, options(nomem, nostack)) };
    block();
    let result = f();
    // DAIF.F is bit 6 (Arm ARM C5.2.2).
    if daif & (1 << 6) == 0 {
        allow();
    }
    result
}

/// Lets this CPU take a stop request: PSTATE.F clear.
pub fn allow() {
    // SAFETY: unmasks FIQs, whose only sources are the stop request and the watchdog's tick;
    // the FIQ vector handles both.
    unsafe { core::arch::asm!("msr daifclr, #1", options(nomem, nostack)) };
}

/// Keeps stop requests out of this CPU (PSTATE.F set): it starts a recovery itself, and its own
/// request must not bring it back to the follower path.
pub fn block() {
    // SAFETY: masks FIQs only; a pending stop request stays pending.
    unsafe { core::arch::asm!("msr daifset, #1", options(nomem, nostack)) };
}
