//! The few instructions the `x86_64` crate does not wrap (CPUID, RDTSC), and stopping a CPU.

use x86_64::instructions::{hlt, interrupts};

pub fn cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    [r.eax, r.ebx, r.ecx, r.edx]
}

pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the time-stamp counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Stops this CPU for good (interrupts are never enabled in the hypervisor).
pub fn halt_forever() -> ! {
    loop {
        interrupts::disable();
        hlt();
    }
}
