//! Time from the generic counter (CNTPCT_EL0 at CNTFRQ_EL0 Hz; 62.5 MHz on QEMU `virt`).

use core::sync::atomic::{AtomicU64, Ordering};

use aarch64_cpu::asm::wfi;
use aarch64_cpu::registers::{CNTFRQ_EL0, CNTHP_CTL_EL2, CNTPCT_EL0, Readable, Writeable};
use tandem_core::ticks::Scale;

use crate::sysreg::{isb, write_sysreg};

static AT_BOOT: AtomicU64 = AtomicU64::new(0);
static HZ: AtomicU64 = AtomicU64::new(0);
/// Nanoseconds per tick and ticks per nanosecond ([`Scale`]), set once by [`init`].
static NS_PER_TICK: AtomicU64 = AtomicU64::new(0);
static TICKS_PER_NS: AtomicU64 = AtomicU64::new(0);
/// Nanoseconds per tick in 32.32 fixed point, for [`independent_ns`] alone.
static RECOVERY_NS_Q32: AtomicU64 = AtomicU64::new(0);

pub fn counter() -> u64 {
    CNTPCT_EL0.get()
}

/// Records the boot time; the frequency comes from CNTFRQ_EL0 unless the board states it.
pub fn init(board_hz: Option<u64>) -> u64 {
    AT_BOOT.store(counter(), Ordering::Relaxed);
    let hz = board_hz.unwrap_or_else(|| CNTFRQ_EL0.get());
    HZ.store(hz, Ordering::Relaxed);
    NS_PER_TICK.store(Scale::ns_per_tick(hz).raw(), Ordering::Relaxed);
    TICKS_PER_NS.store(Scale::ticks_per_ns(hz).raw(), Ordering::Relaxed);
    let q32 = (1_000_000_000u128 << 32) / u128::from(hz.max(1));
    RECOVERY_NS_Q32.store(u64::try_from(q32).unwrap_or(u64::MAX), Ordering::Relaxed);
    hz
}

/// The counter at boot and its frequency, for the ledger.
pub fn base() -> (u64, u64) {
    (AT_BOOT.load(Ordering::Relaxed), HZ.load(Ordering::Relaxed))
}

fn scale(factor: &AtomicU64) -> Scale {
    Scale::from_raw(factor.load(Ordering::Relaxed))
}

/// Nanoseconds since [`init`]; 0 before it.
pub fn now_ns() -> u64 {
    ticks_to_ns(counter().saturating_sub(AT_BOOT.load(Ordering::Relaxed)))
}

/// [`now_ns`] by a conversion of its own, for what must work while the exit loop's conversion
/// (`Scale::apply`) is corrupted by a code fault: the recovery that is to repair it, its
/// watchdog, and the log's timestamps, which the recovery's reports carry.
pub fn independent_ns() -> u64 {
    let ticks = counter().wrapping_sub(AT_BOOT.load(Ordering::Relaxed));
    let ns = (u128::from(ticks) * u128::from(RECOVERY_NS_Q32.load(Ordering::Relaxed))) >> 32;
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// Saturating (`tandem_core::ticks`): a guest's CNTV_CVAL_EL0 may be anything up to `u64::MAX`.
pub fn ticks_to_ns(ticks: u64) -> u64 {
    scale(&NS_PER_TICK).apply(ticks)
}

/// The counter ticks in `ns`.
pub fn ticks_in(ns: u64) -> u64 {
    scale(&TICKS_PER_NS).apply(ns)
}

/// The counter value `ns` after boot.
pub fn counter_at(ns: u64) -> u64 {
    AT_BOOT.load(Ordering::Relaxed).saturating_add(ticks_in(ns))
}

/// Nanoseconds after boot at which the counter reaches `value`.
pub fn ns_at(value: u64) -> u64 {
    ticks_to_ns(value.saturating_sub(AT_BOOT.load(Ordering::Relaxed)))
}

/// Idles this CPU until `deadline`: WFI with the EL2 physical timer set to it. Its interrupt
/// (masked at EL2, so never taken here) still ends the WFI (Arm ARM D1.16.2), and a CPU that
/// halts lets an emulator run the other CPUs meanwhile instead of this one spinning.
pub fn wait_until_ns(deadline: u64) {
    while now_ns() < deadline {
        sleep_once(deadline);
    }
    disarm();
}

/// One WFI of [`wait_until_ns`]: ends at `deadline` or at any interrupt pending for this CPU (a
/// kick among them).
pub fn wait_once_until_ns(deadline: u64) {
    if now_ns() < deadline {
        sleep_once(deadline);
    }
    disarm();
}

fn sleep_once(deadline: u64) {
    // SAFETY: the EL2 physical timer belongs to the hypervisor; the vCPU re-arms it for its own
    // deadline before the next entry.
    unsafe { write_sysreg!("cnthp_cval_el2", counter_at(deadline)) };
    CNTHP_CTL_EL2.write(CNTHP_CTL_EL2::ENABLE::SET);
    isb();
    wfi();
}

/// Disarming drops the timer's (level) interrupt.
fn disarm() {
    CNTHP_CTL_EL2.set(0);
    isb();
}
