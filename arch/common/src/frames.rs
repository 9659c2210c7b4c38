//! Physical 4 KiB frames for virtualization structures and EPT / stage-2 tables, bump-allocated
//! from the hypervisor's memory between the end of the image and the ledger. Nothing is ever
//! freed: every structure lives as long as the partitions do.

use core::sync::atomic::{AtomicU64, Ordering};

use tandem_core::addr::HostPhysAddr;
use tandem_core::config::PAGE_SIZE;

static NEXT: AtomicU64 = AtomicU64::new(0);
static END: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub struct OutOfFrames;

pub fn init(start: u64, end: u64) {
    NEXT.store(start.next_multiple_of(PAGE_SIZE), Ordering::Relaxed);
    END.store(end, Ordering::Relaxed);
}

/// A zeroed frame.
pub fn alloc() -> Result<HostPhysAddr, OutOfFrames> {
    let frame = NEXT.fetch_add(PAGE_SIZE, Ordering::Relaxed);
    if frame + PAGE_SIZE > END.load(Ordering::Relaxed) {
        return Err(OutOfFrames);
    }
    // SAFETY: the frame lies in the hypervisor's own range (see `init`), is identity-mapped and
    // was handed out to no one else (the bump pointer only moves forward).
    unsafe { core::ptr::write_bytes(frame as *mut u8, 0, PAGE_SIZE as usize) };
    Ok(HostPhysAddr::new(frame))
}

/// `len` bytes of contiguous frames, zeroed (the pristine image copy); returns the first.
pub fn alloc_contiguous(len: u64) -> Result<u64, OutOfFrames> {
    let size = len.next_multiple_of(PAGE_SIZE);
    let first = NEXT.fetch_add(size, Ordering::Relaxed);
    if first + size > END.load(Ordering::Relaxed) {
        return Err(OutOfFrames);
    }
    // SAFETY: as in `alloc`, for every frame of the range.
    unsafe { core::ptr::write_bytes(first as *mut u8, 0, size as usize) };
    Ok(first)
}

/// The remaining frames, for the boot report.
pub fn remaining() -> u64 {
    END.load(Ordering::Relaxed)
        .saturating_sub(NEXT.load(Ordering::Relaxed))
        / PAGE_SIZE
}

/// Moves `value` into frames of its own for the rest of the run: large state that only some
/// configurations need (the Ethernet link's windows) stays out of the hypervisor's image, which
/// must fit below a fixed bound, and off the CPUs' stacks.
pub fn leak<T>(value: T) -> Result<&'static mut T, OutOfFrames> {
    const { assert!(core::mem::align_of::<T>() <= PAGE_SIZE as usize) };
    let at = alloc_contiguous(core::mem::size_of::<T>().max(1) as u64)?;
    let slot = at as *mut T;
    // SAFETY: `alloc_contiguous` handed out these frames to no one else, identity-mapped,
    // page-aligned (so aligned for `T`) and at least `size_of::<T>()` bytes long; the value is
    // moved in once and never freed, so the reference lives as long as it claims.
    unsafe {
        slot.write(value);
        Ok(&mut *slot)
    }
}
