//! Console lines: formatted text, one byte at a time through the runtime's UART, or in pieces
//! through the CONSOLE_WRITE hypercall.

use core::fmt::{self, Write};
use core::marker::PhantomData;

use crate::Runtime;

struct Console<R>(PhantomData<R>);

impl<R: Runtime> Write for Console<R> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        s.bytes().for_each(R::console_byte);
        Ok(())
    }
}

/// Prints `args` and a newline.
pub fn print_line<R: Runtime>(args: fmt::Arguments<'_>) {
    let _ = Console::<R>(PhantomData).write_fmt(format_args!("{args}\n"));
}

/// Bytes gathered before one CONSOLE_WRITE: a short line goes in one call, a longer one in
/// several (the hypervisor takes up to 4 KiB, but the buffer lives on a small guest stack).
const CHUNK: usize = 128;

/// Gathers formatted text and sends it with CONSOLE_WRITE whenever the buffer fills.
struct Hypercalls<R> {
    buf: [u8; CHUNK],
    len: usize,
    _runtime: PhantomData<R>,
}

impl<R: Runtime> Hypercalls<R> {
    fn flush(&mut self) {
        if self.len > 0 {
            R::console_write(&self.buf[..self.len]);
            self.len = 0;
        }
    }
}

impl<R: Runtime> Write for Hypercalls<R> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &byte in s.as_bytes() {
            if self.len == CHUNK {
                self.flush();
            }
            self.buf[self.len] = byte;
            self.len += 1;
        }
        Ok(())
    }
}

/// Prints `args` and a newline with CONSOLE_WRITE hypercalls instead of UART writes.
pub fn write_line<R: Runtime>(args: fmt::Arguments<'_>) {
    let mut out = Hypercalls::<R> {
        buf: [0; CHUNK],
        len: 0,
        _runtime: PhantomData,
    };
    let _ = out.write_fmt(format_args!("{args}\n"));
    out.flush();
}

/// `println!` for code generic over the runtime: `say!(R, "...", args)`.
#[macro_export]
macro_rules! say {
    ($rt:ty, $($arg:tt)*) => {
        $crate::console::print_line::<$rt>(format_args!($($arg)*))
    };
}
