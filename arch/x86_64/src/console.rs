//! The physical console: partitions' lines, whole and prefixed, plus an emergency path for
//! failures of the hypervisor itself.

use core::fmt::Write;
use core::sync::atomic::{AtomicU16, Ordering};

use spin::Mutex;

use crate::serial::Uart;

const COM1: u16 = 0x3f8;

static PORT: AtomicU16 = AtomicU16::new(COM1);
static LOCK: Mutex<()> = Mutex::new(());

fn uart() -> Uart {
    Uart::new(PORT.load(Ordering::Relaxed))
}

pub fn init(port: u16) {
    PORT.store(port, Ordering::Relaxed);
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
