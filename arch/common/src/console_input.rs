//! The machine's console line, read for the partitions: the portable switch
//! ([`tandem_core::console_switch`]: key sequences, target, per-partition queues) behind one
//! lock, fed from the console UART, with what it says printed as `[tandem]` lines.
//!
//! Scratch state (class C): a microreboot, when there is one, starts it afresh from the
//! configuration, as the physical UART's own FIFO would be.

use core::cell::Cell;
use core::sync::atomic::{AtomicU8, Ordering};

use spin::mutex::TicketMutex;
use tandem_core::config::{MAX_PARTITIONS, System};
use tandem_core::console_switch::Switch;

use crate::console::{Console, ConsoleUart};

static SWITCH: TicketMutex<Switch> = TicketMutex::new(Switch::new());

/// How often each slot looks at the line, published from [`Switch::readers`] and
/// [`Switch::watcher`] for the check every exit makes ([`wanted`]): one load.
static LOOK: [AtomicU8; MAX_PARTITIONS] = [const { AtomicU8::new(NEVER) }; MAX_PARTITIONS];
const NEVER: u8 = 0;
/// A reader: on every exit.
const EVERY: u8 = 1;
/// The watcher: on one exit in [`WATCH_EVERY`], since it only needs to see the switch keys.
const WATCH: u8 = 2;
const WATCH_EVERY: u8 = 32;

/// The slot the console input goes to ([`Switch::target`]), [`NO_TARGET`] if none: the one
/// partition whose unfinished lines are shown ([`is_target`]).
static TARGET: AtomicU8 = AtomicU8::new(NO_TARGET);
const NO_TARGET: u8 = u8::MAX;

fn publish(switch: &Switch) {
    TARGET.store(switch.target().unwrap_or(NO_TARGET), Ordering::Relaxed);
    let (readers, watcher) = (switch.readers(), switch.watcher());
    for (slot, look) in (0u8..).zip(&LOOK) {
        let how = if readers & 1u8.checked_shl(slot.into()).unwrap_or(0) != 0 {
            EVERY
        } else if watcher == Some(slot) {
            WATCH
        } else {
            NEVER
        };
        look.store(how, Ordering::Relaxed);
    }
}

/// Sets the switch up for `system`, before any partition runs.
/// For a recovery, with every other CPU stopped: whoever held the switch's lock is gone.
pub fn reset_lock() {
    while SWITCH.is_locked() {
        // SAFETY: as for the console's lock (`Console::reset_lock`).
        unsafe { SWITCH.force_unlock() };
    }
}

pub fn setup(system: &System) {
    let switch = Switch::setup(system);
    publish(&switch);
    *SWITCH.lock() = switch;
}

/// The switch's slot for the partition at configuration index `index`, and how often that slot
/// is to look at the line ([`wanted`]).
pub fn slot(index: usize) -> Option<(u8, &'static AtomicU8)> {
    let slot = SWITCH.lock().slot(index)?;
    Some((slot, LOOK.get(usize::from(slot))?))
}

/// Whether the console input goes to slot `slot` now.
pub fn is_target(slot: u8) -> bool {
    TARGET.load(Ordering::Relaxed) == slot
}

/// Whether a partition should look at the line now, `look` saying how often (from [`slot`]):
/// on every exit for a reader, on one in [`WATCH_EVERY`] (counted in `skipped`, this CPU's) for
/// the watcher.
#[inline]
pub fn wanted(look: &AtomicU8, skipped: &Cell<u8>) -> bool {
    match look.load(Ordering::Relaxed) {
        EVERY => true,
        WATCH => {
            let n = skipped.get().wrapping_add(1) % WATCH_EVERY;
            skipped.set(n);
            n == 0
        }
        _ => false,
    }
}

/// Reads what waits on the line into the switch, then gives partition `slot` up to `buf.len()`
/// of the bytes routed to it; how many. Skipped (0) while another CPU holds the switch: the
/// caller polls again.
pub fn input<U: ConsoleUart>(system: &System, slot: u8, now_ns: u64, buf: &mut [u8]) -> usize {
    let Some(mut switch) = SWITCH.try_lock() else {
        return 0;
    };
    switch.pull(now_ns, Console::<U>::read_byte, system, &mut |say| {
        Console::<U>::hypervisor_line(format_args!("{say}"))
    });
    let n = switch.take(slot, buf);
    publish(&switch);
    n
}

/// Every copy of the partition at configuration index `index` has stopped: it can no longer be
/// chosen, and if input went to it, it goes nowhere now (said on the console).
pub fn stopped<U: ConsoleUart>(system: &System, index: usize) {
    let mut switch = SWITCH.lock();
    if let Some(slot) = switch.slot(index) {
        switch.stopped(slot, system, &mut |say| {
            Console::<U>::hypervisor_line(format_args!("{say}"))
        });
    }
    publish(&switch);
}
