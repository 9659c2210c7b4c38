//! Time from the TSC. Under Bochs the TSC counts emulated instructions and the board states its
//! frequency; elsewhere it is calibrated against the PIT.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::io::{inb, outb, rdtsc};

static TSC_AT_BOOT: AtomicU64 = AtomicU64::new(0);
/// Nanoseconds per TSC tick and ticks per nanosecond as 32.32 fixed point, so converting on the
/// exit path is a multiply and a shift instead of a 128-bit division.
static NS_PER_TICK: AtomicU64 = AtomicU64::new(0);
static TICKS_PER_NS: AtomicU64 = AtomicU64::new(0);
const FRACTION_BITS: u32 = 32;

const PIT_HZ: u64 = 1_193_182;
/// Calibration window: 10 ms of PIT channel 2.
const CALIBRATION_TICKS: u16 = (PIT_HZ / 100) as u16;

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

/// The TSC value at `ns` after boot.
pub fn tsc_at(ns: u64) -> u64 {
    TSC_AT_BOOT
        .load(Ordering::Relaxed)
        .saturating_add(fixed_mul(ns, &TICKS_PER_NS))
}

pub fn spin_until_ns(deadline: u64) {
    while now_ns() < deadline {
        core::hint::spin_loop();
    }
}

pub fn delay_us(us: u64) {
    spin_until_ns(now_ns() + us * 1000);
}

/// Counts TSC ticks over a PIT one-shot on channel 2 (gate through port 0x61).
fn calibrate_with_pit() -> u64 {
    // SAFETY: the PIT and port 0x61 are owned by the hypervisor; no partition is given them.
    unsafe {
        let gate = inb(0x61);
        outb(0x61, (gate & !0x02) | 0x01);
        outb(0x43, 0b1011_0000);
        outb(0x42, CALIBRATION_TICKS as u8);
        outb(0x42, (CALIBRATION_TICKS >> 8) as u8);
        let start = rdtsc();
        while inb(0x61) & 0x20 == 0 {
            core::hint::spin_loop();
        }
        let ticks = rdtsc() - start;
        outb(0x61, gate);
        ticks * PIT_HZ / u64::from(CALIBRATION_TICKS)
    }
}
