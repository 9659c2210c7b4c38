//! Time from the TSC. Under Bochs the TSC counts emulated instructions and the board states its
//! frequency; elsewhere it is calibrated against the PIT.

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::instructions::port::{Port, PortWriteOnly};

use crate::io::rdtsc;

static TSC_AT_BOOT: AtomicU64 = AtomicU64::new(0);
/// Nanoseconds per TSC tick and ticks per nanosecond as 32.32 fixed point, so converting on the
/// exit path is a multiply and a shift instead of a 128-bit division.
static NS_PER_TICK: AtomicU64 = AtomicU64::new(0);
static TICKS_PER_NS: AtomicU64 = AtomicU64::new(0);
const FRACTION_BITS: u32 = 32;

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
    let ns_per_tick = (1_000_000_000u128 << FRACTION_BITS) / u128::from(hz);
    let ticks_per_ns = (u128::from(hz) << FRACTION_BITS) / 1_000_000_000;
    NS_PER_TICK.store(ns_per_tick.min(u64::MAX.into()) as u64, Ordering::Relaxed);
    TICKS_PER_NS.store(ticks_per_ns.min(u64::MAX.into()) as u64, Ordering::Relaxed);
    hz
}

fn fixed_mul(value: u64, factor: &AtomicU64) -> u64 {
    let product = u128::from(value) * u128::from(factor.load(Ordering::Relaxed));
    (product >> FRACTION_BITS).min(u64::MAX.into()) as u64
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
