//! Copies between the hypervisor and a partition's memory, for hypercall buffers.

use tandem_core::config::MemoryRegion;

/// Host address of `len` bytes at `offset` in `region`, if they lie inside it.
fn host(region: &MemoryRegion, offset: u64, len: usize) -> Option<u64> {
    let end = offset.checked_add(len as u64)?;
    (end <= region.size).then(|| region.hpa.raw() + offset)
}

/// Fills `buf` from `region` at `offset`; leaves it untouched if the range is not inside.
pub fn read(region: &MemoryRegion, offset: u64, buf: &mut [u8]) {
    if let Some(src) = host(region, offset, buf.len()) {
        // SAFETY: the range lies inside one of the partition's regions (checked above), which the
        // validated configuration makes identity-mapped host memory the partition alone owns.
        unsafe { core::ptr::copy_nonoverlapping(src as *const u8, buf.as_mut_ptr(), buf.len()) }
    }
}

/// Copies `data` into `region` at `offset`; does nothing if the range is not inside.
pub fn write(region: &MemoryRegion, offset: u64, data: &[u8]) {
    if let Some(dst) = host(region, offset, data.len()) {
        // SAFETY: as in `read`.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), dst as *mut u8, data.len()) }
    }
}
