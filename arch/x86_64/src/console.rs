//! The physical console on COM1 (or the UART the board names): see `tandem_hw::console`.

use core::sync::atomic::{AtomicU16, Ordering};

use tandem_hw::console as shared;

use crate::serial::Uart;

const COM1: u16 = 0x3f8;

static PORT: AtomicU16 = AtomicU16::new(COM1);

fn uart() -> Uart {
    Uart::new(PORT.load(Ordering::Relaxed))
}

pub fn init(port: u16) {
    PORT.store(port, Ordering::Relaxed);
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
