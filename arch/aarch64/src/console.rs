//! The physical console: partitions' lines, whole and prefixed, plus an emergency path for
//! failures of the hypervisor itself.

use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;

use crate::pl011::Pl011;

/// QEMU `virt`'s PL011, used until the configuration names the console.
const DEFAULT_BASE: u64 = 0x0900_0000;

static BASE: AtomicU64 = AtomicU64::new(DEFAULT_BASE);
static LOCK: Mutex<()> = Mutex::new(());

fn uart() -> Pl011 {
    Pl011::new(BASE.load(Ordering::Relaxed))
}

pub fn init(base: u64) {
    BASE.store(base, Ordering::Relaxed);
    uart().init();
}

/// Prints `[partition] line`; lines from different CPUs never interleave.
pub fn partition_line(partition: &str, line: &[u8]) {
    let _guard = LOCK.lock();
    let u = uart();
    u.write(b"[");
    u.write(partition.as_bytes());
    u.write(b"] ");
    u.write(line);
    u.write(b"\n");
}

/// Writes a hypervisor failure report without taking the console lock, which the failing CPU may
/// hold. Lines may interleave with another CPU's, but they get out.
pub fn emergency(args: core::fmt::Arguments<'_>) {
    let mut u = uart();
    let _ = u.write_str("[tandem] FATAL: ");
    let _ = u.write_fmt(args);
    let _ = u.write_str("\n");
}

pub fn drain() {
    uart().drain();
}
