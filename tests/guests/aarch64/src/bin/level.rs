//! The virtual timer's interrupt as a level, and its active state in the redistributor, seen
//! with IRQs masked and the CPU interface polled directly. First the timer fires and the
//! hypervisor forwards it; the guest disables the timer before acknowledging it, makes an exit,
//! and must then find nothing pending. Then the timer fires again; the guest acknowledges it
//! (EOImode 1: ICC_EOIR1_EL1 only drops priority), reads GICR_ISACTIVER0 (bit 27 set),
//! deactivates it through GICR_ICACTIVER0, reads GICR_ISACTIVER0 again (clear), and arms the
//! timer once more: it fires only if the deactivation reached the hardware.
#![no_std]
#![no_main]

use core::arch::asm;

use tandem_guest::cpu::{counter_frequency, mmio_read32, mmio_write32, virtual_count};
use tandem_guest::{gic, println};

tandem_guest::entry!(main);

const GICR_SGI: u64 = 0x080a_0000 + 0x1_0000;
const ISACTIVER0: u64 = GICR_SGI + 0x300;
const ICACTIVER0: u64 = GICR_SGI + 0x380;
const SPURIOUS: u32 = 1023;

fn us(n: u64) -> u64 {
    counter_frequency() * n / 1_000_000
}

/// Enables the timer, unmasked, `ticks` from now.
fn arm(ticks: u64) {
    let at = virtual_count() + ticks;
    // SAFETY: the guest's own virtual timer.
    unsafe {
        asm!("msr cntv_cval_el0, {}", in(reg) at, options(nomem, nostack));
        asm!("msr cntv_ctl_el0, {}", in(reg) 1u64, options(nomem, nostack));
        asm!("isb", options(nomem, nostack));
    }
}

fn disarm() {
    // SAFETY: the guest's own virtual timer.
    unsafe { asm!("msr cntv_ctl_el0, xzr", "isb", options(nomem, nostack)) };
}

/// ICC_HPPIR1_EL1: the highest-priority pending interrupt, without acknowledging it.
fn highest_pending() -> u32 {
    let v: u64;
    // SAFETY: reading HPPIR has no side effect.
    unsafe { asm!("mrs {}, icc_hppir1_el1", out(reg) v, options(nomem, nostack)) };
    v as u32
}

/// Waits up to 1 ms for `intid` to be pending; whether it came.
fn comes(intid: u32) -> bool {
    let until = virtual_count() + us(1000);
    while virtual_count() < until {
        if highest_pending() == intid {
            return true;
        }
    }
    false
}

fn main() -> u64 {
    // SAFETY: IRQs stay masked: the test polls the CPU interface instead of taking them.
    unsafe { asm!("msr daifset, #2", options(nomem, nostack)) };
    gic::enable_ppi(gic::VTIMER);
    // SAFETY: ICC_CTLR_EL1.EOImode = 1 (bit 1): EOIR drops priority, deactivation is separate.
    unsafe { asm!("msr icc_ctlr_el1, {}", "isb", in(reg) 2u64, options(nomem, nostack)) };

    arm(us(10));
    let fired = comes(gic::VTIMER);
    disarm();
    println!("timer fired: {fired}; disabled before it was taken");
    // The line above was an exit: the hypervisor saw the timer disabled.
    let left = highest_pending();
    println!("pending after the timer was disabled: {left} ({SPURIOUS} = none)");

    arm(us(10));
    let again = comes(gic::VTIMER);
    let intid = gic::acknowledge();
    disarm();
    // SAFETY: priority drop of the interrupt just acknowledged (EOImode 1).
    unsafe { asm!("msr icc_eoir1_el1, {}", in(reg) u64::from(intid), options(nomem, nostack)) };
    let active = mmio_read32(ISACTIVER0) & (1 << gic::VTIMER) != 0;
    println!(
        "fired again: {again}, acknowledged {intid}; GICR_ISACTIVER0 shows it active: {active}"
    );
    mmio_write32(ICACTIVER0, 1 << gic::VTIMER);
    let still = mmio_read32(ISACTIVER0) & (1 << gic::VTIMER) != 0;
    println!("after GICR_ICACTIVER0: active {still}");
    arm(us(10));
    let third = comes(gic::VTIMER);
    disarm();
    println!("the timer fires once more after that deactivation: {third}");
    u64::from(
        !(fired && left == SPURIOUS && again && intid == gic::VTIMER && active && !still && third),
    )
}
