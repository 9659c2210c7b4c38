//! Memory a device reads and writes on its own: whole frames of the hypervisor's identity-mapped
//! memory, so an address the CPU uses is the address the device is given.

use core::sync::atomic::{Ordering, fence};

use tandem_core::config::PAGE_SIZE;

use super::NicError;
use crate::frames;

/// `pages` contiguous zeroed frames; returns the first.
pub fn alloc(pages: u64) -> Result<u64, NicError> {
    frames::alloc_contiguous(pages * PAGE_SIZE).map_err(|_| NicError::OutOfFrames)
}

/// Copies `bytes` into device-visible memory at `addr`.
///
/// # Safety
/// `addr..addr + bytes.len()` must be DMA memory this driver allocated and the device does not
/// own now.
pub unsafe fn write(addr: u64, bytes: &[u8]) {
    // SAFETY: the caller's contract.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, bytes.len()) };
}

/// Copies device-written memory at `addr` into `out`.
///
/// # Safety
/// As [`write`], for reading.
pub unsafe fn read(addr: u64, out: &mut [u8]) {
    // SAFETY: the caller's contract.
    unsafe { core::ptr::copy_nonoverlapping(addr as *const u8, out.as_mut_ptr(), out.len()) };
}

/// Orders the CPU's writes to DMA memory before what follows (a doorbell register write), and a
/// device's completion seen in memory before the reads of the data it covers.
pub fn barrier() {
    fence(Ordering::SeqCst);
}

/// A volatile view of a device-shared value at `addr`.
///
/// # Safety
/// `addr` must be aligned DMA memory this driver allocated.
pub unsafe fn load<T: Copy>(addr: u64) -> T {
    // SAFETY: the caller's contract.
    unsafe { (addr as *const T).read_volatile() }
}

/// # Safety
/// As [`load`].
pub unsafe fn store<T: Copy>(addr: u64, value: T) {
    // SAFETY: the caller's contract.
    unsafe { (addr as *mut T).write_volatile(value) }
}
