//! The hypervisor's own log: defmt frames on the board's log UART, decoded on the host by xtask.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU16, Ordering};

use crate::serial::Uart;

/// 0 until the log UART is initialised; frames before that are dropped.
static PORT: AtomicU16 = AtomicU16::new(0);
static TAKEN: AtomicBool = AtomicBool::new(false);

struct EncoderCell(UnsafeCell<defmt::Encoder>);
// SAFETY: the encoder is only touched between `acquire` and `release`, which `TAKEN` serialises.
unsafe impl Sync for EncoderCell {}
static ENCODER: EncoderCell = EncoderCell(UnsafeCell::new(defmt::Encoder::new()));

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
        Uart::new(port).write(bytes);
    }
}

#[defmt::global_logger]
struct Logger;

// SAFETY: `acquire` takes `TAKEN` before any other method touches the encoder, and `release`
// gives it back; the hypervisor runs with interrupts disabled, so no handler re-enters on this CPU.
unsafe impl defmt::Logger for Logger {
    fn acquire() {
        while TAKEN
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        // SAFETY: `TAKEN` is held.
        unsafe { (*ENCODER.0.get()).start_frame(emit) }
    }

    unsafe fn flush() {}

    unsafe fn release() {
        // SAFETY: called by defmt after `acquire`, so `TAKEN` is held.
        unsafe { (*ENCODER.0.get()).end_frame(emit) };
        TAKEN.store(false, Ordering::Release);
    }

    unsafe fn write(bytes: &[u8]) {
        // SAFETY: as in `release`.
        unsafe { (*ENCODER.0.get()).write(bytes, emit) }
    }
}

defmt::timestamp!("{=u64:us}", crate::time::now_ns() / 1000);
