//! Preparing a partition's memory before its first instruction: zeroed, the image copied in, and
//! x86_64 boot page tables that identity-map the first 4 GiB of guest-physical space.

use tandem_core::addr::GuestPhysAddr;
use tandem_core::config::Partition;
use tandem_core::config::X86_BOOT_TABLES;
use x86_64::structures::paging::PageTableFlags;

const PML4: u64 = X86_BOOT_TABLES.start;
const PDPT: u64 = PML4 + 0x1000;
const PD: u64 = PDPT + 0x1000;
const TABLE: PageTableFlags = PageTableFlags::PRESENT.union(PageTableFlags::WRITABLE);
const PAGE_2M: PageTableFlags = TABLE.union(PageTableFlags::HUGE_PAGE);

/// Host address backing `gpa`; the configuration guarantees the range lies in one region.
fn host(p: &Partition, gpa: u64, len: u64) -> *mut u8 {
    let region = p
        .region_for(GuestPhysAddr::new(gpa), len)
        .expect("validated configuration maps this range");
    (region.hpa.raw() + (gpa - region.gpa.raw())) as *mut u8
}

fn write_u64(p: &Partition, gpa: u64, value: u64) {
    // SAFETY: `host` returns partition memory, identity-mapped and not running yet.
    unsafe { (host(p, gpa, 8) as *mut u64).write(value) }
}

/// Loads `image` into partition `p`. Runs on the bootstrap CPU before any vCPU starts.
pub fn load(p: &Partition, image: &[u8]) {
    for r in &p.memory {
        // SAFETY: the region is the partition's own host memory (validated: inside RAM, not the
        // hypervisor's, exclusive), identity-mapped, and no vCPU runs yet.
        unsafe { core::ptr::write_bytes(r.hpa.raw() as *mut u8, 0, r.size as usize) };
    }
    let dst = host(p, p.image.load.raw(), image.len() as u64);
    // SAFETY: as above; the image fits in its region (validated against `image.size`).
    unsafe { core::ptr::copy_nonoverlapping(image.as_ptr(), dst, image.len()) };

    write_u64(p, PML4, PDPT | TABLE.bits());
    for i in 0..4 {
        write_u64(p, PDPT + 8 * i, (PD + 0x1000 * i) | TABLE.bits());
    }
    for i in 0..2048 {
        write_u64(p, PD + 8 * i, (i << 21) | PAGE_2M.bits());
    }
}
