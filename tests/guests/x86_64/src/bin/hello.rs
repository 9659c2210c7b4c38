//! Counts and prints, checks what the CPU reveals, and shuts down cleanly: the everyday guest.
//! `tsc=1` also prints the time-stamp counter, read directly: an input no log records, which
//! makes a fault-tolerant backup diverge. `hashed=1` ends each count line with a running hash
//! of the stream (`count 7 h=...`), so an output oracle sees any line that differs.
#![no_std]
#![no_main]

use tandem_guest::cpu::{cpuid, rdtsc};
use tandem_guest::{Guest, Runtime, println};

tandem_guest::entry!(main);

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
        println!("tsc {}", rdtsc());
    }
    let hashed = info.number::<u32>("hashed") == Some(1);
    let mut hash: u32 = 0x811c_9dc5;
    for i in 1..=count {
        if hashed {
            // FNV-1a over the count's bytes, carried from line to line.
            hash = i
                .to_le_bytes()
                .iter()
                .fold(hash, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
            println!("count {i} h={hash:08x}");
        } else {
            println!("count {i}");
        }
    }
    let (status, _) = Guest::console_write(b"written through CONSOLE_WRITE\n");
    println!("done (console write status {status})");
    if vmx { 1 } else { 0 }
}
