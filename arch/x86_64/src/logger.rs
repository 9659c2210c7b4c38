//! The hypervisor's defmt log on the board's log UART (COM2 on PCs): see `tandem_hw::log`.

use core::sync::atomic::{AtomicU16, Ordering};

use crate::serial::Uart;

/// 0 until the log UART is initialised; frames before that are dropped.
static PORT: AtomicU16 = AtomicU16::new(0);

pub fn init(port: u16) {
    Uart::new(port).init();
    PORT.store(port, Ordering::Release);
}

pub fn drain() {
    let port = PORT.load(Ordering::Acquire);
    if port != 0 {
        Uart::new(port).drain();
    }
}

fn emit(bytes: &[u8]) {
    let port = PORT.load(Ordering::Acquire);
    if port != 0 {
        Uart::new(port).send(bytes);
    }
}

tandem_hw::global_logger!(emit, crate::time::now_ns);
