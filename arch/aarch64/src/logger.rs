//! The hypervisor's own log: defmt frames, decoded on the host by xtask with the exact ELF. They
//! go where the board says: a PL011, or (the `virt` machine has only one UART, which carries the
//! partitions' text) a host file `log.bin` written through semihosting, one call per frame.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use tandem_core::config::Uart;

use crate::pl011::Pl011;
use crate::semihosting;

const OFF: u8 = 0;
const UART: u8 = 1;
const SEMIHOSTING: u8 = 2;
/// Frame bytes gathered before a semihosting write; longer frames take several writes.
const CHUNK: usize = 256;

static SINK: AtomicU8 = AtomicU8::new(OFF);
/// The PL011 base or the semihosting file handle.
static TARGET: AtomicU64 = AtomicU64::new(0);
static TAKEN: AtomicBool = AtomicBool::new(false);

struct State {
    encoder: defmt::Encoder,
    buf: [u8; CHUNK],
    len: usize,
}

struct StateCell(UnsafeCell<State>);
// SAFETY: the state is only touched between `acquire` and `release`, which `TAKEN` serialises.
unsafe impl Sync for StateCell {}
static STATE: StateCell = StateCell(UnsafeCell::new(State {
    encoder: defmt::Encoder::new(),
    buf: [0; CHUNK],
    len: 0,
}));

/// Opens the log sink; frames before this are dropped.
pub fn init(log: Uart) {
    match log {
        Uart::Pl011 { base } => {
            Pl011::new(base.raw()).init();
            TARGET.store(base.raw(), Ordering::Relaxed);
            SINK.store(UART, Ordering::Release);
        }
        Uart::Semihosting => {
            if let Some(handle) = semihosting::open_for_writing("log.bin") {
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
        UART => Pl011::new(TARGET.load(Ordering::Relaxed)).write(bytes),
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

/// Runs `f` on the encoder with a sink that gathers bytes and writes them out in chunks.
///
/// # Safety
/// The caller holds `TAKEN`.
unsafe fn with_encoder(f: impl FnOnce(&mut defmt::Encoder, &mut dyn FnMut(&[u8]))) {
    // SAFETY: the caller holds `TAKEN`, so no other reference to the state exists.
    let State { encoder, buf, len } = unsafe { &mut *STATE.0.get() };
    let mut sink = |mut bytes: &[u8]| {
        while !bytes.is_empty() {
            let n = (CHUNK - *len).min(bytes.len());
            buf[*len..*len + n].copy_from_slice(&bytes[..n]);
            *len += n;
            bytes = &bytes[n..];
            if *len == CHUNK {
                out(&buf[..]);
                *len = 0;
            }
        }
    };
    f(encoder, &mut sink);
}

/// Writes out the end of the current frame.
///
/// # Safety
/// The caller holds `TAKEN`.
unsafe fn flush() {
    // SAFETY: as in `with_encoder`.
    let state = unsafe { &mut *STATE.0.get() };
    out(&state.buf[..state.len]);
    state.len = 0;
}

#[defmt::global_logger]
struct Logger;

// SAFETY: `acquire` takes `TAKEN` before any other method touches the state, and `release` gives
// it back; the hypervisor runs with interrupts masked at EL2, so nothing re-enters on this CPU.
unsafe impl defmt::Logger for Logger {
    fn acquire() {
        while TAKEN
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        // SAFETY: `TAKEN` is held.
        unsafe { with_encoder(|e, sink| e.start_frame(sink)) }
    }

    unsafe fn flush() {}

    unsafe fn release() {
        // SAFETY: called by defmt after `acquire`, so `TAKEN` is held.
        unsafe {
            with_encoder(|e, sink| e.end_frame(sink));
            flush();
        }
        TAKEN.store(false, Ordering::Release);
    }

    unsafe fn write(bytes: &[u8]) {
        // SAFETY: as in `release`.
        unsafe { with_encoder(|e, sink| e.write(bytes, sink)) }
    }
}

defmt::timestamp!("{=u64:us}", crate::time::now_ns() / 1000);
