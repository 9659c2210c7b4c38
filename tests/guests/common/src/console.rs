//! Console lines: formatted text, one byte at a time, through the runtime's UART.

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

/// `println!` for code generic over the runtime: `say!(R, "...", args)`.
#[macro_export]
macro_rules! say {
    ($rt:ty, $($arg:tt)*) => {
        $crate::console::print_line::<$rt>(format_args!($($arg)*))
    };
}
