//! Tries what a partition must not do: garbage hypercalls, PSCI calls for CPUs it does not own,
//! the physical timer, SMCs to firmware, and finally memory outside its own or an access the
//! hypervisor cannot decode. Every attempt must be refused or contained; the last one, chosen by
//! `finally=` in its arguments, must stop it.
#![no_std]
#![no_main]

use tandem_guest::cpu::{
    halt_forever, read_physical_timer, read_u64, write_physical_timer, write_u64,
    write_with_writeback,
};
use tandem_guest::hypercall::{
    self, E_FAULT, E_INVALID, E_NOSYS, PSCI_CPU_ON, arg, call, partition_info, psci, psci_smc,
};
use tandem_guest::{expect_fault, faults_taken, println};

tandem_guest::entry!(main);

const PSCI_INVALID_PARAMETERS: i64 = -2;
const SMCCC_UNKNOWN: i64 = -1;

fn main() -> u64 {
    let info = partition_info();
    let mut failures: usize = 0;

    let attempts: [(&str, u64, [u64; 4], i64); 6] = [
        ("unknown call", 0x7777, [0; 4], E_NOSYS),
        (
            "console write outside memory",
            hypercall::CONSOLE_WRITE,
            [0x1000_0000, 16, 0, 0],
            E_FAULT,
        ),
        (
            "console write too long",
            hypercall::CONSOLE_WRITE,
            [0x4000_1000, 1 << 30, 0, 0],
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
            [0x4000_1000, 8, 0, 0],
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

    expect_fault();
    let v = read_physical_timer();
    expect_fault();
    write_physical_timer(1);
    let faults = faults_taken();
    println!("physical timer accesses faulted {faults} of 2 times (read {v:#x})");
    if faults != 2 {
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
        Some("writeback") => {
            println!("writing the UART with post-index writeback");
            write_with_writeback(tandem_guest::console::UART, 0x41);
        }
        Some("halt") => {
            println!("halting with interrupts off");
            halt_forever();
        }
        _ => return failures as u64,
    }
    println!("ERROR: the access was not stopped");
    99
}
