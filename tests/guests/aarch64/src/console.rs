//! Console output through the partition's PL011, polling the flag register like a real driver.
//! Each register access is one plain load or store, so the hypervisor gets a full syndrome.

use core::fmt::{self, Write};

use crate::cpu::{mmio_read32, mmio_write32};

pub const UART: u64 = 0x0900_0000;
const FR: u64 = 0x18;
const FR_TXFF: u32 = 1 << 5;

pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            while mmio_read32(UART + FR) & FR_TXFF != 0 {}
            mmio_write32(UART, b.into());
        }
        Ok(())
    }
}

pub fn print(args: fmt::Arguments<'_>) {
    let _ = Console.write_fmt(args);
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::console::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}
