//! Reads ID_AA64PFR0_EL1.SVE. Where SVE is offered, asks for the longest vectors (ZCR_EL1.LEN =
//! 15) and prints the vector length RDVL gives; where it is not, checks that RDVL is an
//! undefined instruction all the same.
#![no_std]
#![no_main]

use core::arch::asm;

use tandem_guest::{expect_fault, faults_taken, println};

tandem_guest::entry!(main);

/// RDVL X0, #1: the vector length in bytes, encoded so no SVE assembler support is needed.
fn rdvl() -> u64 {
    let bytes: u64;
    // SAFETY: reads the vector length; where SVE is not offered the guest's vectors skip it.
    unsafe { asm!(".inst 0x04bf5020", out("x0") bytes, options(nomem, nostack)) };
    bytes
}

fn main() -> u64 {
    let pfr0: u64;
    // SAFETY: an ID register read (trapped by HCR_EL2.TID3 and answered by the hypervisor).
    unsafe { asm!("mrs {}, id_aa64pfr0_el1", out(reg) pfr0, options(nomem, nostack)) };
    let sve = pfr0 >> 32 & 0xf;
    // SVE at EL1 and EL0 needs CPACR_EL1.ZEN = 0b11 (FPEN kept): only EL2 may trap it then.
    // SAFETY: the guest's own trap control.
    unsafe { asm!("msr cpacr_el1, {}", "isb", in(reg) 3u64 << 20 | 3 << 16, options(nostack)) };
    if sve == 0 {
        println!("SVE offered: no (ID_AA64PFR0_EL1.SVE 0)");
        expect_fault();
        let bytes = rdvl();
        let faulted = faults_taken() == 1;
        println!("RDVL is an undefined instruction: {faulted}");
        return u64::from(!faulted || bytes != 0);
    }
    // SAFETY: ZCR_EL1 (s3_0_c1_c2_0): the longest vectors EL2 allows.
    unsafe { asm!("msr s3_0_c1_c2_0, {}", "isb", in(reg) 0xfu64, options(nostack)) };
    let bytes = rdvl();
    println!(
        "SVE offered: yes (ID_AA64PFR0_EL1.SVE {sve}); vector length {bytes} bytes ({} bits)",
        bytes * 8
    );
    0
}
