//! The hypervisor's own log: defmt frames, decoded on the host by xtask with the exact ELF. They
//! go where the board says: a PL011, or (the `virt` machine has only one UART, which carries the
//! partitions' text) a host file `log.bin` written through semihosting, one call per frame.

use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use tandem_core::config::Uart;

use crate::pl011::Pl011;
use crate::semihosting;

const OFF: u8 = 0;
const UART: u8 = 1;
const SEMIHOSTING: u8 = 2;

static SINK: AtomicU8 = AtomicU8::new(OFF);
/// The PL011 base or the semihosting file handle.
static TARGET: AtomicU64 = AtomicU64::new(0);

/// Opens the log sink; frames before this are dropped.
pub fn init(log: Uart) {
    match log {
        Uart::Pl011 { base } => {
            Pl011::new(base.raw()).init();
            TARGET.store(base.raw(), Ordering::Relaxed);
            SINK.store(UART, Ordering::Release);
        }
        Uart::Semihosting => {
            if let Some(handle) = semihosting::open_for_writing(c"log.bin") {
                TARGET.store(handle, Ordering::Relaxed);
                SINK.store(SEMIHOSTING, Ordering::Release);
            }
        }
        // Validation rejects port-mapped UARTs on aarch64 boards.
        Uart::Pio16550 { .. } => {}
    }
}

fn out(bytes: &[u8]) {
    match SINK.load(Ordering::Acquire) {
        UART => Pl011::new(TARGET.load(Ordering::Relaxed)).transmit(bytes),
        SEMIHOSTING => semihosting::write(TARGET.load(Ordering::Relaxed), bytes),
        _ => {}
    }
}

/// Writes out whatever a frame left behind; the run is about to end.
pub fn drain() {
    if SINK.load(Ordering::Acquire) == UART {
        Pl011::new(TARGET.load(Ordering::Relaxed)).drain();
    }
}

tandem_hw::global_logger!(out, crate::time::independent_ns);
