//! Copies between the hypervisor and a partition's memory, for hypercall buffers, and between
//! two copies of a partition, for re-protection.

use tandem_core::config::{MemoryRegion, PAGE_SIZE, Partition};

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

/// What a backend does around copying guest memory to keep it coherent with what a guest sees
/// (nothing where caches are coherent with every access, as on x86).
pub trait Coherence {
    /// Before `len` bytes at `hpa`, which a guest wrote, are read.
    fn before_read(hpa: u64, len: u64);
    /// After `len` bytes at `hpa`, which a guest will read, were written.
    fn after_write(hpa: u64, len: u64);
}

/// The region page `page` (numbered across `p`'s regions in order) lies in, and its offset there.
fn page_at(p: &Partition, mut page: u64) -> Option<(&MemoryRegion, u64)> {
    for region in &p.memory {
        let pages = region.size / PAGE_SIZE;
        if page < pages {
            return Some((region, page * PAGE_SIZE));
        }
        page -= pages;
    }
    None
}

/// Copies page `page` of partition `p`, whose vCPU is paused, into `out` (re-protection across
/// boards); `false` past the partition's end.
pub fn read_page<C: Coherence>(
    p: &Partition,
    page: u64,
    out: &mut [u8; PAGE_SIZE as usize],
) -> bool {
    let Some((region, offset)) = page_at(p, page) else {
        return false;
    };
    C::before_read(region.hpa.raw() + offset, PAGE_SIZE);
    read(region, offset, out);
    true
}

/// Writes `data` into page `page` of partition `p` from `offset` in the page, or zeroes it
/// when `data` is `None` (a spare, whose vCPU has not run, receiving a re-protection); `false` if
/// the bytes do not lie inside the page or the page inside the partition.
pub fn write_page<C: Coherence>(
    p: &Partition,
    page: u64,
    offset: u64,
    data: Option<&[u8]>,
) -> bool {
    let len = data.map_or(PAGE_SIZE, |d| d.len() as u64);
    let Some((region, start)) = page_at(p, page).filter(|_| offset + len <= PAGE_SIZE) else {
        return false;
    };
    let at = start + offset;
    match data {
        Some(data) => write(region, at, data),
        None => {
            if let Some(dst) = host(region, at, len as usize) {
                // SAFETY: as in `read`.
                unsafe { core::ptr::write_bytes(dst as *mut u8, 0, len as usize) }
            }
        }
    }
    C::after_write(region.hpa.raw() + at, len);
    true
}

/// The partition to copy into has another guest-physical layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub struct LayoutDiffers;

/// Copies pages `first..first + count` (numbered across the regions in order) of partition
/// `from`, whose vCPU is paused, into `to`, a copy of the same guest in host memory of its own
/// whose vCPU has not run (re-protection). Pages past the end are ignored.
pub fn copy_pages<C: Coherence>(
    from: &Partition,
    to: &Partition,
    mut first: u64,
    mut count: u64,
) -> Result<(), LayoutDiffers> {
    let layout = |r: &MemoryRegion| (r.gpa, r.size);
    if !from
        .memory
        .iter()
        .map(layout)
        .eq(to.memory.iter().map(layout))
    {
        return Err(LayoutDiffers);
    }
    for (src, dst) in from.memory.iter().zip(&to.memory) {
        if count == 0 {
            break;
        }
        let pages = src.size / PAGE_SIZE;
        if first >= pages {
            first -= pages;
            continue;
        }
        let here = count.min(pages - first);
        let (offset, len) = (first * PAGE_SIZE, here * PAGE_SIZE);
        C::before_read(src.hpa.raw() + offset, len);
        // SAFETY: both ranges lie in partitions' own host memory (validated: inside RAM, not the
        // hypervisor's, exclusive, so they do not overlap), identity-mapped, inside regions of
        // the same size; `from`'s vCPU is paused and `to`'s has not run.
        unsafe {
            core::ptr::copy_nonoverlapping(
                (src.hpa.raw() + offset) as *const u8,
                (dst.hpa.raw() + offset) as *mut u8,
                len as usize,
            )
        };
        C::after_write(dst.hpa.raw() + offset, len);
        count -= here;
        first = 0;
    }
    Ok(())
}
