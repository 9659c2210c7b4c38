//! Tries what a partition must not do: garbage hypercalls, PSCI calls for CPUs it does not own,
//! the physical timer, SMCs to firmware, and finally memory outside its own or an access the
//! hypervisor cannot decode. Every attempt must be refused or contained; the last one, chosen by
//! `finally=` in its arguments, must stop it, except `finally=abort`: a read and a write outside
//! its memory must each be a synchronous external abort it survives.
#![no_std]
#![no_main]

use tandem_guest::common::checks::{access_outside, bad_hypercalls};
use tandem_guest::cpu::{
    halt_forever, read_physical_timer, read_u64, write_physical_timer, write_u64,
    write_with_writeback,
};
use tandem_guest::hypercall::{PSCI_CPU_ON, psci, psci_smc};
use tandem_guest::{Guest, Runtime, arg, expect_fault, faults_taken, last_fault, println};

tandem_guest::entry!(main);

const PSCI_INVALID_PARAMETERS: i64 = -2;
const SMCCC_UNKNOWN: i64 = -1;

fn main() -> u64 {
    let info = Guest::partition_info();
    let mut failures = bad_hypercalls::<Guest>(0x1000_0000, 0x4000_1000);

    let entry = main as *const () as u64;
    let hvc = psci(PSCI_CPU_ON, [1, entry, 0]);
    let smc = psci_smc(PSCI_CPU_ON, [1, entry, 0]);
    println!("CPU_ON of a CPU outside the partition refused: {hvc} over HVC, {smc} over SMC");
    if hvc != PSCI_INVALID_PARAMETERS || smc != PSCI_INVALID_PARAMETERS {
        failures += 1;
    }
    let unknown = psci_smc(0xc200_0000, [0; 3]);
    println!("unknown SMC answered {unknown}");
    if unknown != SMCCC_UNKNOWN {
        failures += 1;
    }

    // The physical timer is the partition's own, emulated: a compare value long past does
    // nothing while the timer is disabled (CNTP_CTL_EL0 0, ISTATUS clear), and nothing faults.
    let before = faults_taken();
    write_physical_timer(1);
    let v = read_physical_timer();
    let faults = faults_taken() - before;
    println!("physical timer: CNTP_CTL_EL0 {v:#x} after CNTP_CVAL_EL0 = 1, {faults} faults");
    if faults != 0 || v != 0 {
        failures += 1;
    }

    let finally = arg(info.args(), "finally").unwrap_or_default();
    if finally == "abort" {
        return (failures + external_aborts()) as u64;
    }
    if !access_outside::<Guest>(finally, read_u64, write_u64) {
        match finally {
            "writeback" => {
                println!("writing the UART with post-index writeback");
                write_with_writeback(tandem_guest::console::base(), 0x41);
            }
            "halt" => {
                println!("halting with interrupts off");
                halt_forever();
            }
            _ => return failures as u64,
        }
    }
    println!("ERROR: the access was not stopped");
    99
}

/// Nothing backs this address: a read and a write there must each be a synchronous external
/// abort at the access (DFSC 0b010000, WnR telling them apart, FAR_EL1 the address), taken from
/// EL1; the guest resumes past it.
const UNBACKED: u64 = 0x1000_0000;

fn external_aborts() -> usize {
    let mut failures = 0;
    for write in [false, true] {
        let before = faults_taken();
        expect_fault();
        if write {
            write_u64(UNBACKED, 1);
        } else {
            read_u64(UNBACKED);
        }
        let (esr, far) = last_fault();
        let (ec, dfsc, wnr) = (esr >> 26, esr & 0x3f, esr >> 6 & 1);
        println!(
            "{} at {UNBACKED:#x}: {} faults, EC {ec:#x}, DFSC {dfsc:#x}, WnR {wnr}, FAR {far:#x}",
            if write { "write" } else { "read" },
            faults_taken() - before
        );
        if faults_taken() - before != 1
            || ec != 0x25
            || dfsc != 0x10
            || wnr != u64::from(write)
            || far != UNBACKED
        {
            println!("ERROR: not a synchronous external abort on the access");
            failures += 1;
        }
    }
    println!("survived both external aborts");
    failures
}
