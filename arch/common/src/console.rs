//! The physical console: partitions' lines, whole and prefixed, plus an emergency path for
//! failures of the hypervisor itself.

use core::fmt::Write;

use spin::Mutex;

/// Where console bytes go: the board's UART driver.
pub trait Sink: Write {
    fn write_bytes(&mut self, bytes: &[u8]);
}

static LOCK: Mutex<()> = Mutex::new(());

/// Prints `[partition] line`; lines from different CPUs never interleave.
pub fn partition_line(sink: &mut impl Sink, partition: &str, line: &[u8]) {
    let _guard = LOCK.lock();
    sink.write_bytes(b"[");
    sink.write_bytes(partition.as_bytes());
    sink.write_bytes(b"] ");
    sink.write_bytes(line);
    sink.write_bytes(b"\n");
}

/// Writes a hypervisor failure report without taking the console lock, which the failing CPU may
/// hold. Lines may interleave with another CPU's, but they get out.
pub fn emergency(sink: &mut impl Sink, args: core::fmt::Arguments<'_>) {
    let _ = sink.write_str("[tandem] FATAL: ");
    let _ = sink.write_fmt(args);
    let _ = sink.write_str("\n");
}
