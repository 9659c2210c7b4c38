//! The virtual timer's interrupt as a level, and its active state in this vCPU's bank (a GICv3
//! redistributor's SGI frame, a GICv2 distributor's banked registers), seen with IRQs masked and
//! the CPU interface polled directly. First the timer fires and the hypervisor forwards it; the
//! guest disables the timer before acknowledging it, makes an exit, and must then find nothing
//! pending. Then the timer fires again; the guest acknowledges it (EOImode 1: the end of
//! interrupt only drops priority), reads ISACTIVER0 (bit 27 set), deactivates it through
//! ICACTIVER0, reads ISACTIVER0 again (clear), and arms the timer once more: it fires only if
//! the deactivation reached the hardware.
#![no_std]
#![no_main]

use core::arch::asm;

use tandem_guest::cpu::{counter_frequency, virtual_count};
use tandem_guest::{gic, println};

tandem_guest::entry!(main);

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

/// Waits up to 1 ms for `intid` to be pending; whether it came.
fn comes(intid: u32) -> bool {
    let until = virtual_count() + us(1000);
    while virtual_count() < until {
        if gic::highest_pending() == intid {
            return true;
        }
    }
    false
}

fn main() -> u64 {
    // SAFETY: IRQs stay masked: the test polls the CPU interface instead of taking them.
    unsafe { asm!("msr daifset, #2", options(nomem, nostack)) };
    gic::enable_ppi(gic::VTIMER);
    gic::split_priority_drop();
    // Where ISACTIVER0 and ICACTIVER0 of the vCPU's own SGIs and PPIs are.
    let frame = if gic::version() == 2 { "GICD" } else { "GICR" };

    arm(us(10));
    let fired = comes(gic::VTIMER);
    disarm();
    println!("timer fired: {fired}; disabled before it was taken");
    // The line above was an exit: the hypervisor saw the timer disabled.
    let left = gic::highest_pending();
    println!(
        "pending after the timer was disabled: {left} ({} = none)",
        gic::SPURIOUS
    );

    arm(us(10));
    let again = comes(gic::VTIMER);
    let ack = gic::acknowledge();
    let intid = ack.intid;
    disarm();
    // EOImode 1: a priority drop only.
    gic::end(ack);
    let active = gic::private_active(gic::VTIMER);
    println!(
        "fired again: {again}, acknowledged {intid}; {frame}_ISACTIVER0 shows it active: {active}"
    );
    gic::deactivate_private(gic::VTIMER);
    let still = gic::private_active(gic::VTIMER);
    println!("after {frame}_ICACTIVER0: active {still}");
    arm(us(10));
    let third = comes(gic::VTIMER);
    disarm();
    println!("the timer fires once more after that deactivation: {third}");
    u64::from(
        !(fired
            && left == gic::SPURIOUS
            && again
            && intid == gic::VTIMER
            && active
            && !still
            && third),
    )
}
