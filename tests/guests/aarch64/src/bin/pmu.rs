//! The PMU as a partition sees it. Reads ID_AA64DFR0_EL1.PMUVer, ID_DFR0_EL1.PerfMon and whether
//! its device tree names an `arm,armv8-pmuv3` node.
//!
//! Where the PMU is hidden (the default), PMCR_EL0 must be an undefined instruction and nothing
//! may name a PMU. Where it is given (`pmu = true`), the first boot leaves the PMU dirty (counters
//! enabled and counting, preset values, overflow flags with their interrupts enabled, EL0
//! access, event filters) and restarts the partition with PSCI SYSTEM_RESET; the second boot
//! checks it starts clean and no overflow interrupt is left over, then counts INST_RETIRED and
//! cycles over a loop, checks that nothing counts while the CPU is at EL2 although the filters
//! ask for it (NSH) across a hypercall, and takes two cycle-counter overflow interrupts, each
//! exactly once. (The cycle counter, not an event counter: QEMU 7.2 raises an event counter's
//! overflow interrupt only at the next exception-level change, emulators.md 5.6.)
#![no_std]
#![no_main]

use core::arch::asm;

use tandem_guest::common::abi::YIELD;
use tandem_guest::hypercall::{PSCI_SYSTEM_RESET, psci};
use tandem_guest::{
    Guest, Runtime, expect_fault, faults_taken, gic, machine, overflows, println, taken,
};

tandem_guest::entry!(main);

/// Reads a system register by name.
macro_rules! mrs {
    ($reg:literal) => {{
        let v: u64;
        // SAFETY: a PMU or ID register read; where the PMU is trapped the caller expects the
        // fault.
        unsafe { asm!(concat!("mrs {}, ", $reg), out(reg) v, options(nomem, nostack)) };
        v
    }};
}

/// Writes a system register by name, then synchronises.
macro_rules! msr {
    ($reg:literal, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: the partition's own PMU, given to it.
        unsafe { asm!(concat!("msr ", $reg, ", {}"), "isb", in(reg) v, options(nomem, nostack)) };
    }};
}

/// PMCR_EL0: enable, reset the event counters, reset the cycle counter, 64-bit cycle counter.
const PMCR_E: u64 = 1 << 0;
const PMCR_P: u64 = 1 << 1;
const PMCR_C: u64 = 1 << 2;
const PMCR_LC: u64 = 1 << 6;
/// The cycle counter's bit in the enable, interrupt and overflow registers.
const CYCLES: u64 = 1 << 31;
/// PMEVTYPER<n>_EL0 and PMCCFILTR_EL0.NSH: count at EL2 too, if EL2 lets it.
const NSH: u64 = 1 << 27;
/// The INST_RETIRED event.
const INST_RETIRED: u64 = 0x08;
/// Loop iterations counted; each is two instructions.
const LOOP: u64 = 10_000;
/// Cycles from the preset to the cycle counter's overflow.
const TO_OVERFLOW: u64 = 1_000;

/// Whether the device tree has a PMU node (`compatible = "arm,armv8-pmuv3"`).
fn names_pmu() -> bool {
    machine::tree().is_some_and(|tree| tree.device("arm,armv8-pmuv3").is_some())
}

/// Runs `n` iterations of a two-instruction loop.
fn spin(n: u64) {
    // SAFETY: a register-only loop.
    unsafe { asm!("1: subs {0}, {0}, #1", "b.ne 1b", inout(reg) n => _, options(nomem, nostack)) };
}

/// The PMU interrupts taken so far.
fn pmu_interrupts() -> usize {
    taken().filter(|&i| i == gic::PMU).count()
}

fn main() -> u64 {
    let info = Guest::partition_info();
    let pmuver = mrs!("id_aa64dfr0_el1") >> 8 & 0xf;
    let perfmon = mrs!("id_dfr0_el1") >> 24 & 0xf;
    let node = names_pmu();
    println!(
        "boot {}: PMUVer {pmuver}, PerfMon {perfmon}; the device tree names arm,armv8-pmuv3: {node}",
        info.resets + 1
    );
    if pmuver == 0 {
        expect_fault();
        let _ = mrs!("pmcr_el0");
        let faulted = faults_taken() == 1;
        println!("no PMU: PMCR_EL0 is an undefined instruction: {faulted}");
        return u64::from(!faulted || node || perfmon != 0);
    }
    if info.resets == 0 {
        leave_dirty();
        println!("the PMU left counting, preset, overflowed with interrupts on; restarting");
        psci(PSCI_SYSTEM_RESET, [0; 3]);
        println!("ERROR: SYSTEM_RESET returned");
        return 1;
    }
    let clean = starts_clean();
    let counts = counts();
    let stops = stops_at_el2();
    let overflow = takes_overflows();
    msr!("pmcr_el0", 0);
    u64::from(!(node && clean && counts && stops && overflow))
}

/// Boot 1: everything a guest can leave behind in the PMU, the overflow interrupt's line up (set
/// last: QEMU 7.2 re-evaluates the line when the flags or their enables are written, not
/// PMCR_EL0.E).
fn leave_dirty() {
    msr!("pmuserenr_el0", 0xf);
    msr!("pmevtyper0_el0", INST_RETIRED | NSH);
    msr!("pmccfiltr_el0", NSH);
    msr!("pmevcntr0_el0", 12_345);
    msr!("pmccntr_el0", 67_890);
    msr!("pmcntenset_el0", 1 | CYCLES);
    msr!("pmcr_el0", PMCR_E | PMCR_LC);
    msr!("pmintenset_el1", 1 | CYCLES);
    msr!("pmovsset_el0", 1 | CYCLES);
}

/// Boot 2: nothing of boot 1 is left, and no overflow interrupt comes once it is enabled.
fn starts_clean() -> bool {
    let pmcr = mrs!("pmcr_el0");
    let n = pmcr >> 11 & 0x1f;
    let left = [
        ("PMCR_EL0.E", pmcr & PMCR_E),
        ("PMCNTENSET_EL0", mrs!("pmcntenset_el0")),
        ("PMINTENSET_EL1", mrs!("pmintenset_el1")),
        ("PMOVSSET_EL0", mrs!("pmovsset_el0")),
        ("PMUSERENR_EL0", mrs!("pmuserenr_el0")),
        ("PMEVTYPER0_EL0", mrs!("pmevtyper0_el0")),
        ("PMCCFILTR_EL0", mrs!("pmccfiltr_el0")),
        ("PMEVCNTR0_EL0", mrs!("pmevcntr0_el0")),
        ("PMCCNTR_EL0", mrs!("pmccntr_el0")),
    ];
    for (name, value) in left.iter().filter(|(_, v)| *v != 0) {
        println!("left from boot 1: {name} = {value:#x}");
    }
    gic::enable_ppi(gic::PMU);
    // SAFETY: takes interrupts from here on; the handler records them.
    unsafe { asm!("msr daifclr, #2", "isb", options(nomem, nostack)) };
    spin(LOOP);
    let stale = pmu_interrupts();
    let clean = n > 0 && left.iter().all(|(_, v)| *v == 0) && stale == 0;
    println!(
        "the PMU starts clean: {clean} (PMCR_EL0.N {n}, overflow interrupts left over: {stale})"
    );
    clean
}

/// INST_RETIRED on event counter 0 and the cycle counter both count a loop.
fn counts() -> bool {
    msr!("pmevtyper0_el0", INST_RETIRED);
    msr!("pmccfiltr_el0", 0);
    msr!("pmcntenset_el0", 1 | CYCLES);
    msr!("pmcr_el0", PMCR_E | PMCR_P | PMCR_C | PMCR_LC);
    let (i0, c0) = (mrs!("pmevcntr0_el0"), mrs!("pmccntr_el0"));
    spin(LOOP);
    let (i1, c1) = (mrs!("pmevcntr0_el0"), mrs!("pmccntr_el0"));
    let (insts, cycles) = (i1.wrapping_sub(i0), c1.wrapping_sub(c0));
    let counted = insts >= 2 * LOOP && cycles > 0;
    println!(
        "a {LOOP}-iteration loop counted: {counted} (INST_RETIRED +{insts}, cycles +{cycles})"
    );
    counted
}

/// Across a hypercall (HVC to EL2 and back) only the guest's own few instructions count, though
/// the filters ask for EL2 too: the hypervisor prohibits counting there.
fn stops_at_el2() -> bool {
    msr!("pmevtyper0_el0", INST_RETIRED | NSH);
    msr!("pmccfiltr_el0", NSH);
    let (i0, c0) = (mrs!("pmevcntr0_el0"), mrs!("pmccntr_el0"));
    let (status, _) = Guest::hypercall(YIELD, [0; 4]);
    let (i1, c1) = (mrs!("pmevcntr0_el0"), mrs!("pmccntr_el0"));
    let (insts, cycles) = (i1.wrapping_sub(i0), c1.wrapping_sub(c0));
    let stops = status >= 0 && insts < 100 && cycles < 100;
    println!(
        "counting stops at EL2: {stops} (across a hypercall, with NSH set: INST_RETIRED +{insts}, cycles +{cycles})"
    );
    msr!("pmevtyper0_el0", INST_RETIRED);
    msr!("pmccfiltr_el0", 0);
    stops
}

/// The cycle counter, preset `TO_OVERFLOW` below its 64-bit overflow with its interrupt enabled,
/// interrupts the guest once per overflow, and soon after it (the cycle counter, wrapped, says
/// how long after).
fn takes_overflows() -> bool {
    msr!("pmintenset_el1", CYCLES);
    let mut late = 0;
    for round in 1..=2 {
        msr!("pmccntr_el0", TO_OVERFLOW.wrapping_neg());
        let mut waited = 0;
        while pmu_interrupts() < round && waited < 1_000 {
            spin(10);
            waited += 1;
        }
        late = late.max(mrs!("pmccntr_el0"));
    }
    // Nothing more: each interrupt ended with its flag cleared.
    spin(LOOP);
    msr!("pmintenclr_el1", CYCLES);
    let count = pmu_interrupts();
    let flags = overflows();
    let taken = count == 2 && flags == CYCLES && late < TO_OVERFLOW;
    println!(
        "overflow interrupts as expected: {taken} ({count}, INTID {}, flags {flags:#x}, at most {late} cycles late)",
        gic::PMU
    );
    taken
}
