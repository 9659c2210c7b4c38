//! Register access for a device at a physical address (identity-mapped, device memory).
//!
//! Hand-written rather than `tock-registers` structs: the NICs' register files are sparse
//! (the e1000's span 0x0000 to 0x5404 with a dozen registers used), and offsets from the
//! datasheets read better than pages of reserved padding.

/// A device's register window.
#[derive(Clone, Copy)]
pub struct Mmio {
    base: u64,
}

impl Mmio {
    /// # Safety
    /// `base` must be the identity-mapped, device-memory address of a register window at least
    /// as large as every offset later used, owned by the caller.
    pub unsafe fn new(base: u64) -> Self {
        Self { base }
    }

    pub fn read(&self, offset: u32) -> u32 {
        // SAFETY: `new`'s contract: an owned register window covering `offset`.
        unsafe { ((self.base + u64::from(offset)) as *const u32).read_volatile() }
    }

    pub fn write(&self, offset: u32, value: u32) {
        // SAFETY: as in `read`.
        unsafe { ((self.base + u64::from(offset)) as *mut u32).write_volatile(value) }
    }

    /// The 64-bit address `value` into a low/high register pair.
    pub fn write_pair(&self, low: u32, high: u32, value: u64) {
        self.write(low, value as u32);
        self.write(high, (value >> 32) as u32);
    }
}
