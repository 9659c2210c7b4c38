//! The physical console on the PL011: see `tandem_hw::console`.

use core::sync::atomic::{AtomicU64, Ordering};

use tandem_hw::console as shared;

use crate::pl011::Pl011;

/// QEMU `virt`'s PL011, used until the configuration names the console. It must stay a
/// link-time fact: when the embedded bundle is refused, this is where the hypervisor says so.
const DEFAULT_BASE: u64 = 0x0900_0000;

static BASE: AtomicU64 = AtomicU64::new(DEFAULT_BASE);

fn uart() -> Pl011 {
    Pl011::new(BASE.load(Ordering::Relaxed))
}

pub fn init(base: u64) {
    BASE.store(base, Ordering::Relaxed);
    uart().init();
}

pub fn partition_line(partition: &str, line: &[u8]) {
    shared::partition_line(&mut uart(), partition, line);
}

pub fn emergency(args: core::fmt::Arguments<'_>) {
    shared::emergency(&mut uart(), args);
}

pub fn drain() {
    uart().drain();
}
