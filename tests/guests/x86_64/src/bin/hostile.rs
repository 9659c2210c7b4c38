//! Tries what a partition must not do: garbage hypercalls, ports and MSRs it was not given, VMX
//! instructions, and finally memory outside its own. Every attempt must be refused or contained;
//! the last one, chosen by `finally=` in its arguments, must stop it.
#![no_std]
#![no_main]

use tandem_guest::common::checks::{access_outside, bad_hypercalls};
use tandem_guest::cpu::{
    halt_forever, inb, outb, outl, rdmsr, read_u64, triple_fault, vmxon, write_u64, wrmsr,
};
use tandem_guest::{Guest, Runtime, arg, expect_fault, faults_taken, println};

tandem_guest::entry!(main);

const GP: u8 = 13;
const UD: u8 = 6;

fn main() -> u64 {
    let info = Guest::partition_info();
    let mut failures = bad_hypercalls::<Guest>(0x4000_0000, 0x1000);

    let cmos = inb(0x71);
    outb(0x70, 0x8f);
    outl(0xcf8, 0x8000_0000);
    println!("port 0x71 read {cmos:#x}; writes to 0x70 and 0xcf8 dropped");
    if cmos != 0xff {
        failures += 1;
    }

    expect_fault(GP, 2);
    let v = rdmsr(0xc001_0015);
    expect_fault(GP, 2);
    wrmsr(0x10, 0);
    expect_fault(GP, 2);
    wrmsr(0x1b, 0xfee0_0900);
    expect_fault(UD, 4);
    vmxon(0x2000);
    let faults = faults_taken();
    println!("MSR and VMX attempts faulted {faults} of 4 times (read {v:#x})");
    if faults != 4 {
        failures += 1;
    }

    let finally = arg(info.args(), "finally").unwrap_or_default();
    if !access_outside::<Guest>(finally, read_u64, write_u64) {
        match finally {
            "triple-fault" => {
                println!("making exceptions undeliverable");
                triple_fault();
            }
            "halt" => {
                println!("halting with interrupts off");
                halt_forever();
            }
            _ => return failures as u64,
        }
    }
    println!("ERROR: the access outside my memory was not stopped");
    99
}
