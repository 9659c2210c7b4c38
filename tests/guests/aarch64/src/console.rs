//! Console output through the partition's PL011, polling the flag register like a real driver.
//! Each register access is one plain load or store, so the hypervisor gets a full syndrome.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::cpu::{mmio_read32, mmio_write32};

/// The PL011's base: QEMU `virt`'s unless the device tree names another (`crate::machine`).
static BASE: AtomicU64 = AtomicU64::new(0x0900_0000);
const FR: u64 = 0x18;
const FR_TXFF: u32 = 1 << 5;
const FR_RXFE: u32 = 1 << 4;

/// The PL011's base address.
pub fn base() -> u64 {
    BASE.load(Ordering::Relaxed)
}

pub(crate) fn set_base(base: u64) {
    BASE.store(base, Ordering::Relaxed);
}

pub fn put_byte(byte: u8) {
    while mmio_read32(base() + FR) & FR_TXFF != 0 {}
    mmio_write32(base(), byte.into());
}

/// Waits for a received byte, polling the flag register, and takes it.
pub fn get_byte() -> u8 {
    while mmio_read32(base() + FR) & FR_RXFE != 0 {}
    mmio_read32(base()) as u8
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::common::say!($crate::Guest, $($arg)*)
    };
}
