//! Counts and prints, checks the device tree and PSCI it was given, and shuts down cleanly: the
//! everyday guest. With `reset=N` it first restarts its partition N times (PSCI SYSTEM_RESET);
//! with `off=1` it ends with PSCI SYSTEM_OFF instead of the SHUTDOWN hypercall. `pcount=1` prints
//! the physical counter (trapped and logged for a fault-tolerant partition), `vcount=1` the
//! virtual counter, which no hypervisor can trap without FEAT_ECV: an input no log records, which
//! makes a fault-tolerant backup diverge. `hashed=1` ends each count line with a running hash of
//! the stream (`count 7 h=...`), so an output oracle sees any line that differs; `dirty=N` writes
//! N pages of memory before each line, `via=hypercall` prints each line with CONSOLE_WRITE after
//! a TIME_NOW (`tandem_guest::common::checks::count_lines`).
#![no_std]
#![no_main]

use tandem_guest::cpu::{physical_count, virtual_count};
use tandem_guest::hypercall::{PSCI_SYSTEM_OFF, PSCI_SYSTEM_RESET, PSCI_VERSION, psci};
use tandem_guest::{Guest, Runtime, device_tree, println};

tandem_guest::entry!(main);

fn be32(addr: u64) -> u32 {
    // SAFETY: the device tree lies in the partition's memory, at the address given in X0.
    u32::from_be(unsafe { core::ptr::read_volatile(addr as *const u32) })
}

fn main() -> u64 {
    let info = Guest::partition_info();
    let count: u32 = info.number("count").unwrap_or(10);
    println!(
        "hello from partition {} ({}), {} KiB, {} vCPU, boot {} (after {} resets)",
        info.id,
        info.name(),
        info.memory / 1024,
        info.vcpus,
        info.resets + 1,
        info.resets
    );
    if info.resets < info.number("reset").unwrap_or(0) {
        println!("asking for a reset");
        psci(PSCI_SYSTEM_RESET, [0; 3]);
        println!("ERROR: SYSTEM_RESET returned");
        return 1;
    }
    let dt = device_tree();
    let version = psci(PSCI_VERSION, [0; 3]);
    println!(
        "device tree at {dt:#x}: magic {:#x}, {} bytes; PSCI {}.{}",
        be32(dt),
        be32(dt + 4),
        version >> 16,
        version & 0xffff
    );
    if info.number::<u32>("pcount") == Some(1) {
        println!("physical count {}", physical_count());
    }
    if info.number::<u32>("vcount") == Some(1) {
        println!("virtual count {}", virtual_count());
    }
    if info.number::<u64>("pace_us").is_some() {
        // `pace_us` sleeps through TIMER_SET, whose interrupt a fault-tolerant partition's log
        // carries (its virtual timer's would come at a different point in each copy).
        tandem_guest::gic::enable_spi(tandem_guest::gic::HYPERCALL_TIMER, 0x80);
    }
    tandem_guest::common::checks::count_lines::<Guest>(count, tandem_guest::sleep_hypercall_ns);
    let (status, _) = Guest::console_write(b"written through CONSOLE_WRITE\n");
    println!("done (console write status {status})");
    if info.number("off") == Some(1) {
        println!("powering off");
        psci(PSCI_SYSTEM_OFF, [0; 3]);
        println!("ERROR: SYSTEM_OFF returned");
        return 1;
    }
    0
}
