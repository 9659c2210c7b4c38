//! Measures exit round trips in instructions, at EL1 and EL2 alike: under QEMU `-icount shift=0`
//! virtual time advances 1 ns per instruction (emulators.md 5.6), which the guest reads through
//! the virtual counter (the PMU is the hypervisor's: MDCR_EL2.TPM traps it). A write to the
//! PL011's data register, a YIELD hypercall and a virtual timer interrupt delivered through the
//! virtual GIC, each minus an empty loop; over N round trips the counter's 16 ns tick at 62.5 MHz
//! costs less than 0.1 instruction per exit.
#![no_std]
#![no_main]

use core::arch::asm;

use tandem_guest::common::abi::YIELD;
use tandem_guest::cpu::{counter_frequency, mmio_write32, virtual_count};
use tandem_guest::hypercall::call;
use tandem_guest::{Guest, Runtime, console, gic, println, ticks};

tandem_guest::entry!(main);

const N: u64 = 1000;

/// Nanoseconds of virtual time: instructions executed, under `-icount shift=0`.
fn cycles() -> u64 {
    (u128::from(virtual_count()) * 1_000_000_000 / u128::from(counter_frequency())) as u64
}

fn measure(mut f: impl FnMut()) -> u64 {
    let start = cycles();
    for _ in 0..N {
        f();
    }
    cycles() - start
}

/// Fires the virtual timer at once and waits (IRQs unmasked) until its interrupt was handled.
fn timer_interrupt() {
    let before = ticks();
    // SAFETY: the guest's own virtual timer: a compare value in the past fires immediately.
    unsafe {
        asm!("msr cntv_cval_el0, xzr", "msr cntv_ctl_el0, {}", "isb", in(reg) 1u64, options(nomem, nostack));
    }
    while ticks() == before {
        core::hint::spin_loop();
    }
}

fn main() -> u64 {
    gic::enable_ppi(gic::VTIMER);
    // SAFETY: IRQs on, for the timer measurement.
    unsafe { asm!("msr daifclr, #2", options(nomem, nostack)) };
    let empty = measure(|| core::hint::black_box(()));
    let per_exit = |total: u64| total.saturating_sub(empty) / N;
    // UARTIBRD: a register write that prints nothing.
    let ibrd = console::base() + 0x24;
    let uart = per_exit(measure(|| mmio_write32(ibrd, 0)));
    let hypercall = per_exit(measure(|| {
        core::hint::black_box(call(YIELD, [0; 4]));
    }));
    // `timer=0` leaves the virtual timer out: a fault-tolerant copy's never interrupts it.
    if Guest::partition_info().number::<u32>("timer") == Some(0) {
        println!("bench: uart-write {uart} hypercall {hypercall} cycles per exit");
        return 0;
    }
    let timer = per_exit(measure(timer_interrupt));
    println!(
        "bench: uart-write {uart} hypercall {hypercall} timer-interrupt {timer} cycles per exit"
    );
    0
}
