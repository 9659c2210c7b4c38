//! Counts and prints, checks what the CPU reveals, and shuts down cleanly: the everyday guest.
//! `tsc=1` also prints the time-stamp counter, read in each of the three ways (a fault-tolerant
//! partition's copies all read the time its log gives them). `hashed=1` ends each count line
//! with a running hash of the stream (`count 7 h=...`), so an output oracle sees any line that
//! differs; `dirty=N` writes N pages of memory before each line, `via=hypercall` prints each
//! line with CONSOLE_WRITE after a TIME_NOW (`tandem_guest::common::checks::count_lines`). `state=1` fills registers the hypervisor must
//! carry to another CPU (XMM, MSRs, CR2, debug registers, TPR) before counting and checks them
//! after, on whichever copy of the partition finishes.
#![no_std]
#![no_main]

use tandem_guest::cpu::{cpuid, rdmsr, rdtsc, rdtscp};
use tandem_guest::{Guest, Runtime, println};

tandem_guest::entry!(main);

const IA32_TSC: u32 = 0x10;

fn main() -> u64 {
    let info = Guest::partition_info();
    let count: u32 = info.number("count").unwrap_or(10);
    println!(
        "hello from partition {} ({}), {} KiB, {} vCPU",
        info.id,
        info.name(),
        info.memory / 1024,
        info.vcpus
    );
    let [_, b, c, d] = cpuid(0x4000_0000);
    let mut sig = [0u8; 12];
    for (i, w) in [b, c, d].iter().enumerate() {
        sig[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
    }
    let vmx = cpuid(1)[2] & (1 << 5) != 0;
    println!(
        "hypervisor signature {:?}, VMX visible: {}",
        core::str::from_utf8(&sig[..8]).unwrap_or("?"),
        vmx
    );
    if info.number::<u32>("tsc") == Some(1) {
        // The three ways to read the TSC: RDTSC, RDTSCP (where CPUID offers it), IA32_TSC.
        println!("tsc {}", rdtsc());
        if cpuid(0x8000_0001)[3] & 1 << 27 != 0 {
            let (tsc, aux) = rdtscp();
            println!("tsc {tsc} by RDTSCP, TSC_AUX {aux}");
        }
        println!("tsc {} by RDMSR", rdmsr(IA32_TSC));
    }
    let state = info.number::<u32>("state") == Some(1);
    const SEED: u64 = 0x5eed_0f7a_4de1_1100;
    if state {
        tandem_guest::state::load(SEED);
    }
    tandem_guest::common::checks::count_lines::<Guest>(count, tandem_guest::sleep_ns);
    if state {
        match tandem_guest::state::changed(SEED) {
            None => println!("cpu state kept"),
            Some(register) => println!("ERROR: cpu state changed: {register}"),
        }
    }
    let (status, _) = Guest::console_write(b"written through CONSOLE_WRITE\n");
    println!("done (console write status {status})");
    if vmx { 1 } else { 0 }
}
