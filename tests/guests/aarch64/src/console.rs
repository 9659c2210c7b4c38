//! Console output through the partition's PL011, polling the flag register like a real driver.
//! Each register access is one plain load or store, so the hypervisor gets a full syndrome.

use crate::cpu::{mmio_read32, mmio_write32};

pub const UART: u64 = 0x0900_0000;
const FR: u64 = 0x18;
const FR_TXFF: u32 = 1 << 5;
const FR_RXFE: u32 = 1 << 4;

pub fn put_byte(byte: u8) {
    while mmio_read32(UART + FR) & FR_TXFF != 0 {}
    mmio_write32(UART, byte.into());
}

/// Waits for a received byte, polling the flag register, and takes it.
pub fn get_byte() -> u8 {
    while mmio_read32(UART + FR) & FR_RXFE != 0 {}
    mmio_read32(UART) as u8
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::common::say!($crate::Guest, $($arg)*)
    };
}
