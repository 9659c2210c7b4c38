//! The hypervisor's own log: defmt frames handed to the board's log line in chunks (a UART on
//! x86_64, semihosting on QEMU `virt`), decoded on the host by xtask with the exact ELF.
//!
//! A backend instantiates the logger with [`global_logger!`](crate::global_logger), naming its
//! byte sink and its clock.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

/// Frames are passed to the sink at most this many bytes at a time (whole, if they fit).
const CHUNK: usize = 256;

struct Inner {
    encoder: defmt::Encoder,
    buf: [u8; CHUNK],
    len: usize,
}

/// The encoder and its lock.
pub struct LogState {
    taken: AtomicBool,
    inner: UnsafeCell<Inner>,
}

// SAFETY: `inner` is only touched between `acquire` and `release`, which `taken` serialises
// across CPUs; the hypervisor runs with interrupts disabled, so nothing re-enters on one CPU.
unsafe impl Sync for LogState {}

impl Default for LogState {
    fn default() -> Self {
        Self::new()
    }
}

impl LogState {
    pub const fn new() -> Self {
        Self {
            taken: AtomicBool::new(false),
            inner: UnsafeCell::new(Inner {
                encoder: defmt::Encoder::new(),
                buf: [0; CHUNK],
                len: 0,
            }),
        }
    }

    /// Runs `f` on the encoder with a chunking sink in front of `emit`.
    ///
    /// # Safety
    /// The caller holds `taken` (between `acquire` and `release`).
    unsafe fn with_encoder(
        &self,
        emit: impl Fn(&[u8]),
        f: impl FnOnce(&mut defmt::Encoder, &mut dyn FnMut(&[u8])),
    ) {
        // SAFETY: the caller holds `taken`, so this is the only reference.
        let Inner { encoder, buf, len } = unsafe { &mut *self.inner.get() };
        let mut sink = |mut bytes: &[u8]| {
            while !bytes.is_empty() {
                let n = (CHUNK - *len).min(bytes.len());
                buf[*len..*len + n].copy_from_slice(&bytes[..n]);
                *len += n;
                bytes = &bytes[n..];
                if *len == CHUNK {
                    emit(&buf[..]);
                    *len = 0;
                }
            }
        };
        f(encoder, &mut sink);
    }

    /// For a recovery, with every other CPU stopped: drops whatever frame a failed CPU left
    /// half-written (a zero byte ends it on the wire, where the decoder discards it) and frees the
    /// lock.
    pub fn reset(&self, emit: impl Fn(&[u8])) {
        // SAFETY: every other CPU is stopped and this one holds no reference into `inner`.
        unsafe {
            *self.inner.get() = Inner {
                encoder: defmt::Encoder::new(),
                buf: [0; CHUNK],
                len: 0,
            }
        };
        emit(&[0]);
        self.taken.store(false, Ordering::Release);
    }

    /// Whether some code holds the log: a handler that interrupted it on this CPU must not log.
    pub fn busy(&self) -> bool {
        self.taken.load(Ordering::Acquire)
    }

    pub fn acquire(&self, emit: impl Fn(&[u8])) {
        while self
            .taken
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        // SAFETY: `taken` is held.
        unsafe { self.with_encoder(emit, |e, sink| e.start_frame(sink)) }
    }

    /// # Safety
    /// Called by defmt between `acquire` and `release`.
    pub unsafe fn write(&self, bytes: &[u8], emit: impl Fn(&[u8])) {
        // SAFETY: the caller's contract.
        unsafe { self.with_encoder(emit, |e, sink| e.write(bytes, sink)) }
    }

    /// Ends the frame, hands the rest of it to `emit` and releases the lock.
    ///
    /// # Safety
    /// Called by defmt after `acquire`.
    pub unsafe fn release(&self, emit: impl Fn(&[u8]) + Copy) {
        // SAFETY: the caller's contract: `taken` is held.
        unsafe {
            self.with_encoder(emit, |e, sink| e.end_frame(sink));
            let inner = &mut *self.inner.get();
            emit(&inner.buf[..inner.len]);
            inner.len = 0;
        }
        self.taken.store(false, Ordering::Release);
    }
}

/// Defines the defmt global logger over a [`LogState`]: `global_logger!(emit, now_ns)` with
/// `emit: fn(&[u8])` the log line and `now_ns: fn() -> u64` the clock for timestamps.
#[macro_export]
macro_rules! global_logger {
    ($emit:path, $now_ns:path) => {
        static LOG_STATE: $crate::log::LogState = $crate::log::LogState::new();

        #[defmt::global_logger]
        struct Logger;

        // SAFETY: `LogState` serialises the encoder between `acquire` and `release`.
        unsafe impl defmt::Logger for Logger {
            fn acquire() {
                LOG_STATE.acquire($emit)
            }

            unsafe fn flush() {}

            unsafe fn release() {
                // SAFETY: defmt calls this after `acquire`.
                unsafe { LOG_STATE.release($emit) }
            }

            unsafe fn write(bytes: &[u8]) {
                // SAFETY: defmt calls this between `acquire` and `release`.
                unsafe { LOG_STATE.write(bytes, $emit) }
            }
        }

        defmt::timestamp!("{=u64:us}", $now_ns() / 1000);

        /// For a recovery: the log's lock and frame, reset (`LogState::reset`).
        pub fn reset_log() {
            LOG_STATE.reset($emit)
        }

        /// Whether the log is held (`LogState::busy`).
        pub fn log_busy() -> bool {
            LOG_STATE.busy()
        }
    };
}
