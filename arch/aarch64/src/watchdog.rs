//! The FIQ watchdog (recovery.md 5.4), aarch64's twin of x86's NMI watchdog: with recovery on,
//! every partition CPU's EL1 physical timer ticks every [`PERIOD_NS`] as a Group 0 interrupt,
//! which EL2 takes as a FIQ even in a loop with IRQs masked (`stop`). Once recovery is armed,
//! each CPU running a vCPU checks its own heartbeat in the ledger at each tick: three ticks
//! without a beat means this CPU is stuck in the hypervisor, and it starts the recovery itself
//! (`fault`). This catches what the buddy watchdog cannot: a CPU hung with no live buddy.
//!
//! Why the EL1 physical timer. The EL2 physical timer (CNTHP) is the hypervisor's deadline
//! timer (`time`, `vcpu`), Group 1, and is re-armed at every entry; the EL1 virtual timer is the
//! guest's; the EL2 virtual timer (CNTHV, FEAT_VHE) has no interrupt wired to the GIC on QEMU 7.2
//! `virt` (the CPU model has the timer, but the board connects its PPI 28 output only in later
//! releases, "hw/arm/virt: Wire up non-secure EL2 virtual timer IRQ", 2023). The EL1 physical
//! timer is free: CNTHCTL_EL2.EL1PCEN = 0 traps every guest access to it (Arm ARM D19.2.21),
//! and the guest's physical timer is a model with a virtual interrupt (`physical_timer`). EL2
//! with HCR_EL2.E2H = 0 reaches it through CNTP_*_EL0 whatever CNTHCTL_EL2 says, and it counts
//! the physical count with no offset (Arm ARM D11.2.4). A tick taken from the guest is a FIQ exit
//! (HCR_EL2.FMO routes physical FIQs to EL2), taken again at EL2 once the world switch has saved
//! the guest and cleared PSTATE.F (`entry`), and the guest re-entered: it only costs the guest
//! an exit every period, and the guest's own timers and (virtual) FIQs are left alone.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use aarch64_cpu::registers::{CNTP_CTL_EL0, CNTP_TVAL_EL0, ELR_EL2, Readable, Writeable};
use tandem_core::config::MAX_CPUS;
use tandem_hw::recovery::WATCHDOG_NS;
use tandem_hw::recovery::watchdog;

use crate::gic::{self, GicError};
use crate::sysreg::isb;
use crate::time;

const PERIOD_NS: u64 = WATCHDOG_NS;

/// The tick's INTID (the EL1 physical timer's PPI), once a CPU started ticking.
static TICK: AtomicU32 = AtomicU32::new(u32::MAX);
/// The period in counter ticks, converted once: the tick's path calls no code the exit loop
/// shares (a code fault in the time conversion would otherwise hang the detector with the
/// code it watches).
static PERIOD_TICKS: AtomicU64 = AtomicU64::new(0);
/// Set when recovery is armed: heartbeats beat from then on, so ticks check them.
static CHECKING: AtomicBool = AtomicBool::new(false);
/// Where each CPU was when its watchdog found it hung (ELR_EL2), for the recovery's report.
static HUNG_AT: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Starts this CPU's ticks (with recovery on, as it lets in the stop request): the tick's PPI as
/// Group 0, the timer armed for one period.
pub fn start_ticks() -> Result<(), GicError> {
    TICK.store(gic::enable_tick()?, Ordering::Relaxed);
    PERIOD_TICKS.store(time::ticks_in(PERIOD_NS), Ordering::Relaxed);
    rearm();
    Ok(())
}

/// Recovery is armed: ticks check heartbeats from now on.
pub fn start() {
    CHECKING.store(true, Ordering::Release);
    defmt::info!(
        "FIQ watchdog: the EL1 physical timer every {=u64} ns as a Group 0 interrupt on each partition CPU, {=u32} strikes",
        PERIOD_NS,
        tandem_hw::recovery::STRIKES
    );
}

/// CNTP_TVAL_EL0 sets the compare value one period past the count now (Arm ARM D11.2.4): the
/// timer condition is false again, so its level interrupt drops, and the next tick comes a
/// period later however long this one took.
fn rearm() {
    CNTP_TVAL_EL0.set(PERIOD_TICKS.load(Ordering::Relaxed));
    CNTP_CTL_EL0.write(CNTP_CTL_EL0::ENABLE::SET + CNTP_CTL_EL0::IMASK::CLEAR);
    // The write reaches the timer, and so its output, only at a context synchronization event.
    isb();
}

/// Group 0 interrupt `intid`, acknowledged by the FIQ vector on CPU `cpu` while no recovery
/// stops CPUs: a watchdog tick is re-armed and checked, anything else ended. True if this CPU
/// is hung; its ELR_EL2 is kept for [`hung_at`].
pub fn take(intid: u32, cpu: usize) -> bool {
    if intid != TICK.load(Ordering::Relaxed) {
        gic::end_group0(intid);
        return false;
    }
    // A tick whose line had not dropped yet when the last one was ended is pending again with
    // the timer re-armed (ISTATUS clear): not a period, so not a strike.
    let expired = CNTP_CTL_EL0.is_set(CNTP_CTL_EL0::ISTATUS);
    if expired {
        rearm();
    }
    gic::end_group0(intid);
    if !expired || !hung(cpu) {
        return false;
    }
    HUNG_AT[cpu].store(ELR_EL2.get(), Ordering::Relaxed);
    true
}

/// Where CPU `cpu` was when its watchdog found it hung.
pub fn hung_at(cpu: usize) -> u64 {
    HUNG_AT[cpu].load(Ordering::Relaxed)
}

/// A tick on CPU `cpu`: whether its own heartbeat stood still for the strike count while it
/// runs a vCPU and no recovery is under way.
fn hung(cpu: usize) -> bool {
    CHECKING.load(Ordering::Acquire) && watchdog::stale_on_tick(cpu)
}
