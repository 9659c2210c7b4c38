//! The PMU of a partition that uses it itself (`pmu = true`). By default the PMU is the
//! hypervisor's: MDCR_EL2.TPM and TPMCR trap every PMU register and the ID registers hide it
//! (`vcpu::MDCR`, `idregs`). A partition that asks for it gets its CPUs' PMU as the hardware
//! offers it, with what keeps the hypervisor out of the guest's counts and the guest out of the
//! hypervisor's (Arm ARM D19.3, MDCR_EL2):
//!
//! - TPM = TPMCR = 0: the guest reaches every PMU register without an exit;
//! - HPMN = the event counters the hypervisor leaves to the guest ([`guest_counters`]): all of
//!   them today, since Tandem counts nothing itself ([`HYPERVISOR_COUNTERS`]). The guest reads
//!   HPMN as PMCR_EL0.N;
//! - HPMD = 1 (FEAT_PMUv3p1): counters below HPMN do not count while the CPU is at EL2, so the
//!   guest's counts never include the hypervisor's work, whatever its event filters ask
//!   (PMEVTYPER<n>_EL0.NSH); HCCD = 1 does the same for the cycle counter where FEAT_PMUv3p5
//!   gives it (Arm ARM, The Performance Monitors Extension, "Prohibiting event and cycle
//!   counting": before PMUv3p5 the cycle counter stops at EL2 only if the guest sets
//!   PMCR_EL0.DP).
//!
//! A CPU without FEAT_PMUv3p1 cannot prohibit counting at EL2, so its PMU is not given: it stays
//! trapped and hidden (and the hypervisor says so). The overflow interrupt is a PPI the board
//! names (`[gic] pmu_intid`); it is forwarded to the guest linked to the physical one, as the
//! virtual timer's is (`vcpu::El2Vcpu::interrupts`).

use aarch64_cpu::registers::{ID_AA64DFR0_EL1, MDCR_EL2, Readable};
use tandem_core::config::{Gic, Partition};

use crate::sysreg::{isb, read_sysreg, write_sysreg};

/// Event counters the hypervisor keeps for itself, the highest ones (MDCR_EL2.HPMN leaves the
/// others to the guest). None: Tandem counts nothing today. Reserving some for the hypervisor's
/// own use later is this constant (and enabling them with MDCR_EL2.HPME).
pub const HYPERVISOR_COUNTERS: u64 = 0;

/// ID_AA64DFR0_EL1.PMUVer (Arm ARM D19.2, ID_AA64DFR0_EL1): FEAT_PMUv3p1, FEAT_PMUv3p5, and the
/// value of an IMPLEMENTATION DEFINED PMU that is not PMUv3.
const PMUV3P1: u64 = 0b0100;
const PMUV3P5: u64 = 0b0110;
const PMU_IMPDEF: u64 = 0b1111;

/// PMCR_EL0 (Arm ARM D19.4, PMCR_EL0): P and C reset the event counters and the cycle counter,
/// LC makes the cycle counter overflow at 64 bits (E, bit 0, which enables the counters below
/// HPMN, is left 0); N (bits 15:11) is the number of event counters (at EL2, all of them).
const PMCR_P: u64 = 1 << 1;
const PMCR_C: u64 = 1 << 2;
const PMCR_LC: u64 = 1 << 6;
const PMCR_N_SHIFT: u64 = 11;
const PMCR_N_MASK: u64 = 0x1f;
/// Every counter's bit in the set/clear registers: the event counters' 30:0 and the cycle
/// counter's 31 (Arm ARM D19.4, PMCNTENCLR_EL0, PMINTENCLR_EL1, PMOVSCLR_EL0).
const ALL_COUNTERS: u64 = 0xffff_ffff;

/// This CPU's PMU version (ID_AA64DFR0_EL1.PMUVer; 0 when it has none).
pub fn version() -> u64 {
    ID_AA64DFR0_EL1.read(ID_AA64DFR0_EL1::PMUVer)
}

/// Whether a CPU with PMU `version` can give its PMU to a guest: a PMUv3 with FEAT_PMUv3p1, for
/// MDCR_EL2.HPMD.
fn usable(version: u64) -> bool {
    (PMUV3P1..PMU_IMPDEF).contains(&version)
}

/// The overflow interrupt of partition `p`'s PMU if `p` uses the PMU and this CPU can give it;
/// `None` when its PMU stays trapped and hidden. The same answer decides its device tree, its
/// ID registers, MDCR_EL2 and the interrupt's forwarding.
pub fn granted(p: &Partition, gic: &Gic) -> Option<u32> {
    let intid = gic.pmu_intid.filter(|_| p.pmu)?;
    usable(version()).then_some(intid)
}

/// The event counters this CPU has (PMCR_EL0.N, read at EL2 where it is never reduced by HPMN).
fn counters() -> u64 {
    read_sysreg!("pmcr_el0") >> PMCR_N_SHIFT & PMCR_N_MASK
}

/// The event counters the guest gets: all but [`HYPERVISOR_COUNTERS`]. (With FEAT_HPMN0 absent,
/// HPMN = 0 is CONSTRAINED UNPREDICTABLE; a CPU with no event counter to give has only the cycle
/// counter, which HPMN does not govern.)
pub fn guest_counters() -> u64 {
    counters().saturating_sub(HYPERVISOR_COUNTERS)
}

/// MDCR_EL2's PMU controls for a vCPU that uses the PMU (see the module documentation): TPM and
/// TPMCR clear, HPMN = [`guest_counters`], HPMD, and HCCD with FEAT_PMUv3p5. HPME stays 0: the
/// counters at and above HPMN, the hypervisor's, stay disabled.
pub fn mdcr_controls() -> u64 {
    let hccd = if version() >= PMUV3P5 {
        MDCR_EL2::HCCD::SET.value
    } else {
        0
    };
    MDCR_EL2::HPMD::SET.value | hccd | MDCR_EL2::HPMN.val(guest_counters()).value
}

/// Puts this CPU's PMU in a clean state for a vCPU that starts, so nothing of what counted
/// before (an earlier boot of the partition, firmware) reaches its guest: every counter disabled
/// and zeroed, overflow flags and interrupt enables cleared (which drops the overflow
/// interrupt's line), event types and the cycle counter's filter zero, EL0 access off (Arm ARM
/// D19.4: PMCNTENCLR_EL0, PMINTENCLR_EL1, PMOVSCLR_EL0, PMUSERENR_EL0, PMCCFILTR_EL0,
/// PMSELR_EL0 and PMXEVTYPER_EL0, PMCR_EL0). PMCR_EL0.P written at EL2 resets every event
/// counter, C the cycle counter; E = 0 stops counting; LC, whose reset value is UNKNOWN, is set
/// (RES1 where AArch32 is not implemented, and what a 64-bit kernel chooses).
pub fn reset() {
    // SAFETY: the PMU of this CPU belongs to the vCPU being reset (one vCPU per CPU, and the
    // hypervisor counts nothing); these writes only stop and clear its counters and their
    // interrupt, and select counters that exist (below PMCR_EL0.N).
    unsafe {
        write_sysreg!("pmcntenclr_el0", ALL_COUNTERS);
        write_sysreg!("pmintenclr_el1", ALL_COUNTERS);
        write_sysreg!("pmovsclr_el0", ALL_COUNTERS);
        write_sysreg!("pmuserenr_el0", 0);
        write_sysreg!("pmccfiltr_el0", 0);
        for n in 0..counters() {
            write_sysreg!("pmselr_el0", n);
            isb();
            write_sysreg!("pmxevtyper_el0", 0);
        }
        write_sysreg!("pmselr_el0", 0);
        write_sysreg!("pmcr_el0", PMCR_P | PMCR_C | PMCR_LC);
    }
    isb();
}

/// Whether this CPU's PMU may be asserting its overflow interrupt: a counter's overflow flag is
/// set with its interrupt enabled (PMOVSSET_EL0 and PMINTENSET_EL1). The architecture also asks
/// for the counter to be enabled (Arm ARM, The Performance Monitors Extension, "Generating
/// overflow interrupt requests"; KVM models PMCR_EL0.E and PMCNTENSET_EL0), but QEMU 7.2
/// re-evaluates its line only when the flags or interrupt enables are written or a counter
/// overflows, so its line can stay up after the guest clears PMCR_EL0.E. This wider condition is
/// false only when the line is down on both, which is when a forwarded copy may be withdrawn
/// (`vcpu::El2Vcpu::withdraw_idle_pmu`); a guest that disables its counters with an enabled flag
/// still set gets the interrupt, as QEMU gives it.
pub fn overflow_asserted() -> bool {
    read_sysreg!("pmovsset_el0") & read_sysreg!("pmintenset_el1") & ALL_COUNTERS != 0
}
