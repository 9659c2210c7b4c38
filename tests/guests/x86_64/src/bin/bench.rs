//! Measures exit round trips in TSC ticks, which under Bochs are executed instructions: CPUID, a
//! write to the virtual UART's scratch register, and a YIELD hypercall, each minus an empty loop.
#![no_std]
#![no_main]

use tandem_guest::common::abi::YIELD;
use tandem_guest::cpu::{cpuid, outb, rdtsc};
use tandem_guest::hypercall::call;
use tandem_guest::println;

tandem_guest::entry!(main);

const N: u64 = 2000;

fn measure(mut f: impl FnMut()) -> u64 {
    let start = rdtsc();
    for _ in 0..N {
        f();
    }
    rdtsc() - start
}

fn main() -> u64 {
    let empty = measure(|| core::hint::black_box(()));
    let per_exit = |total: u64| (total.saturating_sub(empty)) / N;
    let cpuid = per_exit(measure(|| {
        core::hint::black_box(cpuid(0));
    }));
    let uart = per_exit(measure(|| outb(0x3ff, 0x55)));
    let hypercall = per_exit(measure(|| {
        core::hint::black_box(call(YIELD, [0; 4]));
    }));
    println!(
        "bench: cpuid {cpuid} uart-write {uart} hypercall {hypercall} ticks per exit \
         (empty loop {} ticks per iteration, subtracted)",
        empty / N
    );
    0
}
