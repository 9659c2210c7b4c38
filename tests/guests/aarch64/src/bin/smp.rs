//! Runs on two vCPUs: vCPU 0 starts vCPU 1 with PSCI CPU_ON (entry point and context ID) and
//! asks AFFINITY_INFO about it before, during and after; vCPU 1 reports the context ID it was
//! given through shared memory and powers itself off (CPU_OFF) once vCPU 0 has seen it; vCPU 0
//! then powers the partition off (SYSTEM_OFF). Both read the virtual counter, which must agree
//! across vCPUs: vCPU 1's reading lies between two of vCPU 0's taken before and after it.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tandem_guest::cpu::virtual_count;
use tandem_guest::hypercall::{PSCI_AFFINITY_INFO, PSCI_SYSTEM_OFF, psci};
use tandem_guest::{Guest, Runtime, println, start_cpu};

tandem_guest::entry!(main);

const SECOND: u64 = 1;
const CONTEXT: u64 = 0x5ec0_0d1d;
const ALREADY_ON: i64 = -4;

/// The context ID vCPU 1 was started with, once it runs.
static REPORTED: AtomicU64 = AtomicU64::new(0);
/// vCPU 0 saw the report: vCPU 1 may power off.
static SEEN: AtomicBool = AtomicBool::new(false);
/// vCPU 1's virtual counter, read as it came up (before it reports its context).
static COUNT: AtomicU64 = AtomicU64::new(0);

fn affinity(target: u64) -> i64 {
    psci(PSCI_AFFINITY_INFO, [target, 0, 0])
}

fn second(context: u64) {
    let mpidr: u64;
    // SAFETY: reads this vCPU's MPIDR_EL1 (the hypervisor's VMPIDR_EL2).
    unsafe { core::arch::asm!("mrs {}, mpidr_el1", out(reg) mpidr, options(nomem, nostack)) };
    COUNT.store(virtual_count(), Ordering::SeqCst);
    println!("vCPU {} up with context {context:#x}", mpidr & 0xff);
    REPORTED.store(context, Ordering::SeqCst);
    while !SEEN.load(Ordering::SeqCst) {
        core::hint::spin_loop();
    }
    println!("vCPU 1 powering itself off");
}

fn main() -> u64 {
    let info = Guest::partition_info();
    println!("partition {} has {} vCPUs", info.name(), info.vcpus);
    let first = virtual_count();
    let before = affinity(SECOND);
    println!("before CPU_ON: vCPU 1 affinity {before} (1 = off)");
    let on = start_cpu(SECOND, second, CONTEXT);
    let during = affinity(SECOND);
    println!("CPU_ON of vCPU 1: {on}; affinity {during} (0 = on)");
    while REPORTED.load(Ordering::SeqCst) == 0 {
        core::hint::spin_loop();
    }
    let reported = REPORTED.load(Ordering::SeqCst);
    let (second_count, last) = (COUNT.load(Ordering::SeqCst), virtual_count());
    println!(
        "virtual counter agrees across vCPUs: {}",
        first <= second_count && second_count <= last
    );
    let again = start_cpu(SECOND, second, CONTEXT);
    println!("vCPU 0 saw context {reported:#x}; CPU_ON again: {again}");
    SEEN.store(true, Ordering::SeqCst);
    while affinity(SECOND) != 1 {
        core::hint::spin_loop();
    }
    println!("vCPU 1 is off again: affinity 1");
    let agree = (before, on, during, reported, again) == (1, 0, 0, CONTEXT, ALREADY_ON);
    println!("both vCPUs agree: {agree}");
    if agree {
        println!("powering off");
        psci(PSCI_SYSTEM_OFF, [0; 3]);
        println!("ERROR: SYSTEM_OFF returned");
    }
    1
}
