//! Measures exit round trips in virtual-counter ticks and, under QEMU `-icount shift=0`, in
//! cycles of the PMU cycle counter, which then counts instructions (emulators.md 5.6): a write to
//! the PL011's data register, a YIELD hypercall and a virtual timer interrupt delivered through
//! the virtual GIC, each minus an empty loop.
#![no_std]
#![no_main]

use core::arch::asm;

use tandem_guest::common::abi::YIELD;
use tandem_guest::cpu::mmio_write32;
use tandem_guest::hypercall::call;
use tandem_guest::{gic, println, ticks};

tandem_guest::entry!(main);

const N: u64 = 1000;

fn cycles() -> u64 {
    let v: u64;
    // SAFETY: reads the PMU cycle counter, enabled in `main`.
    unsafe { asm!("isb", "mrs {}, pmccntr_el0", out(reg) v, options(nomem, nostack)) };
    v
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
    // PMCR_EL0.E (enable), PMCNTENSET_EL0.C (cycle counter), and PMCCFILTR_EL0.NSH so it also
    // counts at EL2: the hypervisor's instructions are what is measured (Arm ARM D13.4.3).
    // SAFETY: the guest's own PMU.
    unsafe {
        asm!("msr pmcr_el0, {}", "msr pmcntenset_el0, {}", "msr pmccfiltr_el0, {}", "isb",
             in(reg) 1u64, in(reg) 1u64 << 31, in(reg) 1u64 << 27, options(nomem, nostack));
    }
    gic::enable_ppi(gic::VTIMER);
    // SAFETY: IRQs on, for the timer measurement.
    unsafe { asm!("msr daifclr, #2", options(nomem, nostack)) };
    let empty = measure(|| core::hint::black_box(()));
    let per_exit = |total: u64| total.saturating_sub(empty) / N;
    let uart = per_exit(measure(|| mmio_write32(0x0900_0024, 0)));
    let hypercall = per_exit(measure(|| {
        core::hint::black_box(call(YIELD, [0; 4]));
    }));
    let timer = per_exit(measure(timer_interrupt));
    println!(
        "bench: uart-write {uart} hypercall {hypercall} timer-interrupt {timer} cycles per exit"
    );
    0
}
