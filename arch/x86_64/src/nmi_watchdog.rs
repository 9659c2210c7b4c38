//! The NMI watchdog (recovery.md 5.4, the Xen / Linux IO-APIC NMI watchdog): with recovery armed,
//! the PIT ticks every [`PERIOD_NS`] and the I/O APIC delivers each tick to every CPU as an NMI,
//! which no amount of interrupt masking holds back. Each CPU running a vCPU then checks its own
//! heartbeat in the ledger: three ticks without a beat means this CPU is stuck in the hypervisor
//! (a masked loop, a lock that never comes free, corrupted code), and it starts the recovery.
//! This catches what the buddy watchdog cannot: every CPU hung at once. The boot option
//! `nmi-watchdog=off` leaves the buddies to watch alone.

use core::sync::atomic::{AtomicU32, Ordering};

use tandem_hw::recovery::watchdog;
use x86_64::instructions::port::PortWriteOnly;

/// Ticks of the PIT's 1.193182 MHz clock per watchdog period (10 ms).
const PIT_DIVISOR: u16 = 11_932;
pub const PERIOD_NS: u64 = 10_000_000;
/// PIT ports and the channel 0 rate-generator command (Intel 8254 data sheet): channel 0,
/// low then high byte, mode 3 (square wave: a rising edge each period), binary.
const PIT_CHANNEL0: u16 = 0x40;
const PIT_COMMAND: u16 = 0x43;
const PIT_CHANNEL0_RATE: u8 = 0b0011_0110;
/// The I/O APIC's register window (Intel 82093AA data sheet, 3.0): select, then data.
const IOAPIC_BASE: u64 = 0xfec0_0000;
const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
/// The PIT's output on a PC's I/O APIC: input 2 (the ISA IRQ 0 override PC firmware reports),
/// or input 0 where IRQ 0 is wired straight through (Bochs); both are programmed, and only the
/// wired one ticks.
const PIT_PINS: [u32; 2] = [0, 2];
/// Redirection entry: delivery mode NMI (100b, bits 10:8), physical destination, edge
/// triggered, unmasked; destination 0xff, every local APIC (82093AA 3.2.4).
const NMI_DELIVERY: u32 = 0b100 << 8;
const BROADCAST: u32 = 0xff << 24;

/// Set by the boot option `nmi-watchdog=off`.
static REFUSED: AtomicU32 = AtomicU32::new(0);

/// Reads the boot option `nmi-watchdog=off` from `cmdline`.
pub fn ask_from(cmdline: &str) {
    if cmdline.split_whitespace().any(|a| a == "nmi-watchdog=off") {
        REFUSED.store(1, Ordering::Relaxed);
    }
}

/// Whether the ticks are wanted once recovery is armed.
pub fn wanted() -> bool {
    REFUSED.load(Ordering::Relaxed) == 0
}

/// Non-zero once the watchdog ticks: the NMI stub then asks [`check`] on every NMI.
#[unsafe(no_mangle)]
static NMI_CHECKS: AtomicU32 = AtomicU32::new(0);

fn ioapic_write(register: u32, value: u32) {
    // SAFETY: the I/O APIC's registers, identity-mapped below 4 GiB and used by nothing else (no
    // partition is given interrupts); selecting then writing is the documented access.
    unsafe {
        ((IOAPIC_BASE + IOREGSEL) as *mut u32).write_volatile(register);
        ((IOAPIC_BASE + IOWIN) as *mut u32).write_volatile(value);
    }
}

/// Makes the NMI stub look at every NMI (a recovery's stop, a watchdog tick).
pub fn check_nmis() {
    NMI_CHECKS.store(1, Ordering::Release);
}

/// Starts the ticks: the PIT as a rate generator, its I/O APIC input delivering NMIs.
pub fn start() {
    for pin in PIT_PINS {
        ioapic_write(0x11 + 2 * pin, BROADCAST);
        ioapic_write(0x10 + 2 * pin, NMI_DELIVERY);
    }
    // SAFETY: the PIT belongs to the hypervisor (the 8259s are masked, no partition has its
    // ports); channel 0 only drives the watchdog.
    unsafe {
        PortWriteOnly::<u8>::new(PIT_COMMAND).write(PIT_CHANNEL0_RATE);
        PortWriteOnly::<u8>::new(PIT_CHANNEL0).write(PIT_DIVISOR as u8);
        PortWriteOnly::<u8>::new(PIT_CHANNEL0).write((PIT_DIVISOR >> 8) as u8);
    }
    check_nmis();
    defmt::info!(
        "NMI watchdog: the PIT every {=u64} ns as an NMI to every CPU, {=u32} strikes",
        PERIOD_NS,
        tandem_hw::recovery::STRIKES
    );
}

/// A watchdog tick on CPU `cpu`: whether this CPU's own heartbeat stood still for the strike
/// count while it runs a vCPU and no recovery is under way.
pub fn hung(cpu: usize) -> bool {
    watchdog::stale_on_tick(cpu)
}
