//! Tries what a partition must not do: garbage hypercalls, ports and MSRs it was not given, VMX
//! instructions, and finally memory outside its own. Every attempt must be refused or contained;
//! the last one, chosen by `finally=` in its arguments, must stop it.
#![no_std]
#![no_main]

use tandem_guest::cpu::{
    halt_forever, inb, outb, outl, rdmsr, read_u64, triple_fault, vmxon, write_u64, wrmsr,
};
use tandem_guest::hypercall::{self, E_FAULT, E_INVALID, E_NOSYS, arg, call, partition_info};
use tandem_guest::{expect_fault, faults_taken, println};

tandem_guest::entry!(main);

const GP: u8 = 13;
const UD: u8 = 6;

fn main() -> u64 {
    let info = partition_info();
    let mut failures: usize = 0;

    let attempts: [(&str, u64, [u64; 4], i64); 6] = [
        ("unknown call", 0x7777, [0; 4], E_NOSYS),
        (
            "console write outside memory",
            hypercall::CONSOLE_WRITE,
            [0x4000_0000, 16, 0, 0],
            E_FAULT,
        ),
        (
            "console write too long",
            hypercall::CONSOLE_WRITE,
            [0x1000, 1 << 30, 0, 0],
            E_INVALID,
        ),
        (
            "console write wrapping",
            hypercall::CONSOLE_WRITE,
            [u64::MAX - 4, 16, 0, 0],
            E_FAULT,
        ),
        (
            "partition info buffer too small",
            hypercall::PARTITION_INFO,
            [0x1000, 8, 0, 0],
            E_INVALID,
        ),
        (
            "timer on an exception vector",
            hypercall::TIMER_SET,
            [1000, 13, 0, 0],
            E_INVALID,
        ),
    ];
    for (what, nr, args, expected) in attempts {
        let (status, _) = call(nr, args);
        if status != expected {
            println!("FAIL: {what}: status {status}, expected {expected}");
            failures += 1;
        }
    }
    println!(
        "bad hypercalls rejected with errors: {}",
        attempts.len() - failures
    );

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

    let target = 0x1000_0000;
    match arg(info.args(), "finally") {
        Some("write") => {
            println!("writing outside my memory at {target:#x}");
            write_u64(target, 0x6666);
        }
        Some("read") => {
            println!("reading outside my memory at {target:#x}");
            let v = read_u64(target);
            println!("read {v:#x}");
        }
        Some("triple-fault") => {
            println!("making exceptions undeliverable");
            triple_fault();
        }
        Some("halt") => {
            println!("halting with interrupts off");
            halt_forever();
        }
        _ => return failures as u64,
    }
    println!("ERROR: the access outside my memory was not stopped");
    99
}
