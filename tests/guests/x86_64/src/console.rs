//! Console output through the virtual 16550 at COM1, polling the line status like a real driver.

use crate::cpu::{inb, outb};

const COM1: u16 = 0x3f8;

pub fn put_byte(byte: u8) {
    while inb(COM1 + 5) & 0x20 == 0 {}
    outb(COM1, byte);
}

/// Waits for a received byte, polling the line status register's data-ready bit, and takes it.
pub fn get_byte() -> u8 {
    while inb(COM1 + 5) & 0x01 == 0 {}
    inb(COM1)
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::common::say!($crate::Guest, $($arg)*)
    };
}
