//! Time from the TSC. Under Bochs the TSC counts emulated instructions and the board states its
//! frequency; elsewhere it is calibrated against the PIT.

use core::sync::atomic::{AtomicU64, Ordering};

use tandem_core::ticks::Scale;
use x86_64::instructions::port::{Port, PortWriteOnly};

use crate::io::rdtsc;

static TSC_AT_BOOT: AtomicU64 = AtomicU64::new(0);
/// Nanoseconds per TSC tick and ticks per nanosecond ([`Scale`]), set once by [`init`].
static NS_PER_TICK: AtomicU64 = AtomicU64::new(0);
static TICKS_PER_NS: AtomicU64 = AtomicU64::new(0);

const PIT_HZ: u64 = 1_193_182;
/// Calibration window: 10 ms of PIT channel 2.
const CALIBRATION_TICKS: u16 = (PIT_HZ / 100) as u16;
/// PIT ports (Intel 8254 data sheet): channel 2's counter and the mode/command register.
const PIT_CHANNEL2: u16 = 0x42;
const PIT_COMMAND: u16 = 0x43;
/// Channel 2, low then high byte, mode 0 (interrupt on terminal count), binary.
const PIT_CHANNEL2_ONE_SHOT: u8 = 0b1011_0000;
/// System control port B: bit 0 gates channel 2, bit 1 drives the speaker, bit 5 is channel 2's
/// output.
const PORT_B: u16 = 0x61;
const PORT_B_GATE2: u8 = 1 << 0;
const PORT_B_SPEAKER: u8 = 1 << 1;
const PORT_B_OUT2: u8 = 1 << 5;

/// Sets the TSC frequency, measuring it when the board does not state it.
pub fn init(board_hz: Option<u64>) -> u64 {
    TSC_AT_BOOT.store(rdtsc(), Ordering::Relaxed);
    let hz = board_hz.unwrap_or_else(calibrate_with_pit).max(1);
    NS_PER_TICK.store(Scale::ns_per_tick(hz).raw(), Ordering::Relaxed);
    TICKS_PER_NS.store(Scale::ticks_per_ns(hz).raw(), Ordering::Relaxed);
    hz
}

/// The TSC at boot and its frequency, for the ledger.
pub fn base() -> (u64, u64) {
    let ns_per_tick = Scale::from_raw(NS_PER_TICK.load(Ordering::Relaxed));
    (
        TSC_AT_BOOT.load(Ordering::Relaxed),
        1_000_000_000 / ns_per_tick.apply(1_000_000).max(1) * 1_000_000,
    )
}

fn fixed_mul(value: u64, factor: &AtomicU64) -> u64 {
    Scale::from_raw(factor.load(Ordering::Relaxed)).apply(value)
}

/// Nanoseconds since [`init`]; 0 before it.
pub fn now_ns() -> u64 {
    let ticks = rdtsc().saturating_sub(TSC_AT_BOOT.load(Ordering::Relaxed));
    fixed_mul(ticks, &NS_PER_TICK)
}

/// The TSC ticks in `ns`.
pub fn ticks_in(ns: u64) -> u64 {
    fixed_mul(ns, &TICKS_PER_NS)
}

/// The TSC value at `ns` after boot.
pub fn tsc_at(ns: u64) -> u64 {
    TSC_AT_BOOT
        .load(Ordering::Relaxed)
        .saturating_add(ticks_in(ns))
}

pub fn spin_until_ns(deadline: u64) {
    while now_ns() < deadline {
        core::hint::spin_loop();
    }
}

/// Counts TSC ticks over a PIT one-shot on channel 2 (gate through port 0x61).
fn calibrate_with_pit() -> u64 {
    let mut port_b = Port::<u8>::new(PORT_B);
    let mut channel2 = PortWriteOnly::<u8>::new(PIT_CHANNEL2);
    // SAFETY: the PIT and port B are owned by the hypervisor; no partition is given them.
    unsafe {
        let gate = port_b.read();
        port_b.write((gate & !PORT_B_SPEAKER) | PORT_B_GATE2);
        PortWriteOnly::new(PIT_COMMAND).write(PIT_CHANNEL2_ONE_SHOT);
        channel2.write(CALIBRATION_TICKS as u8);
        channel2.write((CALIBRATION_TICKS >> 8) as u8);
        let start = rdtsc();
        while port_b.read() & PORT_B_OUT2 == 0 {
            core::hint::spin_loop();
        }
        let ticks = rdtsc() - start;
        port_b.write(gate);
        ticks * PIT_HZ / u64::from(CALIBRATION_TICKS)
    }
}
