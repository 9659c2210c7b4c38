//! The hypervisor recovers from its own failures (recovery.md 6): this module holds the state
//! and policy the recovery works with (the ledger's control block, the mode, the watchdog, the
//! report of a resume and the escalation to a full reset); [`crate::recover`] runs the recovery
//! from detection to resume.
//!
//! What is kept, not rebuilt: the EPT / stage-2 tables and bitmaps built at cold boot (class A,
//! checked only by their effect: a corrupted entry shows as a partition fault) and the static
//! data outside the ledger; the recovery re-derives or resets what of it matters (locks,
//! per-CPU state, the watchdog). Fault-tolerant partitions are not covered yet: with one
//! configured, a failure stops the machine as before.

pub mod control;
pub mod pristine;
pub mod targets;
pub mod trigger;
pub mod watchdog;

use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use tandem_core::config::{MAX_CPUS, System};
use tandem_recovery::cause::ResetCause;
use tandem_recovery::inject::Mode;
use tandem_recovery::steps::Step;

use crate::backend::{Backend, Booted};
use crate::console::Console;
use crate::ledger::{self, VcpuSlot};
use control::{Control, RUNNING};

/// The ledger's recovery control; 0 until bring-up laid the ledger out.
static CONTROL: AtomicU64 = AtomicU64::new(0);
/// What detection leads to ([`Mode`] as a number).
static MODE: AtomicU8 = AtomicU8::new(Mode::Off as u8);
/// Set once every CPU that hosts a partition runs: from then on a failure is recovered.
static ARMED: AtomicBool = AtomicBool::new(false);

/// How long a CPU may go without a heartbeat before its buddy counts a miss; three misses are a
/// hang (recovery.md 5.4, scaled to the emulators' virtual time).
pub const WATCHDOG_NS: u64 = 10_000_000;
pub const STRIKES: u32 = 3;
/// How long the owner waits for the other CPUs to stop.
pub(crate) const QUIESCE_NS: u64 = 50_000_000;

pub(crate) fn mode() -> Mode {
    match MODE.load(Ordering::Relaxed) {
        m if m == Mode::Microreboot as u8 => Mode::Microreboot,
        m if m == Mode::Microreset as u8 => Mode::Microreset,
        _ => Mode::Off,
    }
}

/// Where the ledger is and how long, for the memory-fault injection.
static LEDGER: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];

pub fn ledger_range() -> (u64, u64) {
    (
        LEDGER[0].load(Ordering::Relaxed),
        LEDGER[1].load(Ordering::Relaxed),
    )
}

/// The ledger's control block.
pub fn control() -> Option<&'static Control> {
    match CONTROL.load(Ordering::Acquire) {
        0 => None,
        // SAFETY: set by `setup` to the control block inside the ledger, which lives for the
        // whole run; every field CPUs share is atomic.
        at => Some(unsafe { &*(at as *const Control) }),
    }
}

/// The owner's exclusive view of the control block.
///
/// # Safety
/// Only the recovery's owner calls this, while every other CPU is stopped (or before any
/// started), and it holds no other reference from it.
pub(crate) unsafe fn control_mut() -> &'static mut Control {
    // SAFETY: the caller's contract; `setup` ran (the owner only exists after it).
    unsafe { &mut *(CONTROL.load(Ordering::Acquire) as *mut Control) }
}

/// The CPU running a recovery, if one is under way.
pub fn owner() -> Option<usize> {
    control()
        .map(|c| c.owner.load(Ordering::Acquire))
        .filter(|&o| o != 0)
        .map(|o| o as usize - 1)
}

/// The bound the watchdog needs on the time a running vCPU goes without an exit, when recovery
/// is armed.
pub fn watchdog_bound_ns() -> Option<u64> {
    ARMED.load(Ordering::Relaxed).then_some(WATCHDOG_NS / 2)
}

/// Cold boot: points the recovery at the ledger at `base` and reads the mode from the command
/// line. Recovery stays off for a system with fault-tolerant partitions.
pub fn setup<B: Backend>(base: u64, system: &System, cmdline: &str) {
    CONTROL.store(
        ledger::control::<VcpuSlot<B::VcpuState>>(base),
        Ordering::Release,
    );
    let mode = if !B::RECOVERS || system.partitions.iter().any(|p| p.ft.is_some()) {
        Mode::Off
    } else {
        Mode::from_cmdline(cmdline)
    };
    MODE.store(mode as u8, Ordering::Relaxed);
    let kept = match (mode, control()) {
        (Mode::Off, _) | (_, None) => 0,
        (_, Some(control)) => B::keep_pristine(control),
    };
    defmt::info!(
        "recovery: {=str}; pristine image copy {=u64} bytes, ledger {=u64} bytes",
        mode.name(),
        kept,
        ledger::size::<VcpuSlot<B::VcpuState>>()
    );
}

/// Whether exits are journaled: recovery is on (it is armed only once every CPU runs).
pub fn journaling() -> bool {
    mode() != Mode::Off
}

/// Every partition CPU runs: failures are recovered from now on.
pub fn arm<B: Backend>() {
    if mode() != Mode::Off {
        ARMED.store(true, Ordering::Release);
        B::start_watchdog();
    }
}

pub fn armed() -> bool {
    ARMED.load(Ordering::Acquire)
}

/// Remembers the panic message for the recovery's report (the log cannot be trusted yet).
pub fn note_message(args: core::fmt::Arguments<'_>) {
    struct Into<'a>(&'a mut [u8], usize);
    impl core::fmt::Write for Into<'_> {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let room = self.0.len() - self.1;
            // One log line: the panic location's newline becomes a space.
            for (to, &b) in self.0[self.1..]
                .iter_mut()
                .zip(s.as_bytes().iter().take(room))
            {
                *to = if b == b'\n' { b' ' } else { b };
            }
            self.1 += s.len().min(room);
            Ok(())
        }
    }
    if !armed() {
        return;
    }
    let Some(control) = control() else { return };
    if control.owner.load(Ordering::Acquire) != 0 {
        return;
    }
    // SAFETY: only written here, by a failing CPU before it tries to own the recovery, and read
    // by the owner after every CPU stopped; a second panicking CPU can only garble the text.
    let c = unsafe { control_mut() };
    let mut w = Into(&mut c.message, 0);
    let _ = core::fmt::write(&mut w, args);
    c.message_len = w.1 as u32;
}

/// Called by each CPU as its vCPU is about to run again; the last one closes the recovery.
pub fn resumed<B: Backend>(shared: &Booted<B>) {
    let Some(control) = control() else { return };
    let running = (0..MAX_CPUS)
        .filter(|&c| control.status(c) == RUNNING)
        .count() as u32;
    if control.resumed.fetch_add(1, Ordering::AcqRel) + 1 < running {
        return;
    }
    let now = B::recovery_now_ns();
    // SAFETY: the recovery's last step: every other CPU is back in its loop, and none touches
    // the timeline; the owner word is still held, so no new recovery starts meanwhile.
    let c = unsafe { control_mut() };
    c.timeline.mark(Step::Rebuilt, now);
    c.timeline.mark(Step::Resumed, now);
    let mut steps = [0u64; tandem_recovery::steps::COUNT - 1];
    for (slot, (_, took)) in steps.iter_mut().zip(c.timeline.durations()) {
        *slot = took;
    }
    let boots = ledger::boots::<VcpuSlot<B::VcpuState>>(shared.ledger);
    defmt::warn!(
        "recovery: resumed by {=str} in {=u64} ns: quiesce {=u64} ns, capture {=u64} ns, report {=u64} ns, image {=u64} ns, ledger {=u64} ns, rebuild {=u64} ns, resume {=u64} ns (boots = {=u32}, recoveries = {=u32})",
        mode().name(),
        c.timeline.total(),
        steps[0],
        steps[1],
        steps[2],
        steps[3],
        steps[4],
        steps[5],
        steps[6],
        boots,
        c.history.total
    );
    c.owner.store(0, Ordering::Release);
}

/// Gives up: records why in the ledger, says so, and resets the machine in full.
pub fn escalate<B: Backend>(cause: ResetCause) -> ! {
    if let Some(shared) = B::booted().get() {
        ledger::set_reset_cause::<VcpuSlot<B::VcpuState>>(shared.ledger, cause);
    }
    B::reset_log();
    defmt::error!(
        "recovery: escalating to a full reset: {=str}",
        cause.describe()
    );
    // A stopped CPU may have left a partition's line half-printed: the report starts its own.
    Console::<B::Uart>::reset_lock();
    Console::<B::Uart>::emergency(format_args!(
        "recovery failed ({}): resetting the machine",
        cause.describe()
    ));
    Console::<B::Uart>::drain();
    B::full_reset()
}
