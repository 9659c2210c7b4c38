//! Reading the instruction a guest was executing when it exited: its RIP translated through the
//! guest's own page tables (4-level long-mode paging, or none), then through its memory regions.

use tandem_core::addr::GuestPhysAddr;
use tandem_core::config::MemoryRegion;
use tandem_x86_insn::MAX_LEN;

use super::vmcs::{self, guest};

const CR0_PG: u64 = 1 << 31;
const CR4_LA57: u64 = 1 << 12;
const EFER_LMA: u64 = 1 << 10;
const PRESENT: u64 = 1 << 0;
const PAGE_SIZE_BIT: u64 = 1 << 7;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
const PAGE: u64 = 0x1000;

/// A partition's guest-physical memory as the hypervisor reaches it.
pub struct GuestMemory<'a> {
    pub regions: &'a [MemoryRegion],
}

impl GuestMemory<'_> {
    /// Host address of `len` bytes at `gpa`, if one region holds them all.
    fn host(&self, gpa: u64, len: u64) -> Option<*const u8> {
        let gpa = GuestPhysAddr::new(gpa);
        let r = self.regions.iter().find(|r| r.contains_gpa(gpa, len))?;
        Some((r.hpa.raw() + gpa.offset_from(r.gpa)?) as *const u8)
    }

    fn read_u64(&self, gpa: u64) -> Option<u64> {
        let p = self.host(gpa, 8)?;
        // SAFETY: `p` lies in one of the partition's regions: identity-mapped host memory owned
        // by the partition, whose vCPU is stopped in this exit on this CPU.
        Some(unsafe { (p as *const u64).read_unaligned() })
    }

    /// The guest-physical address of `linear` under the guest's current paging mode.
    fn translate(&self, linear: u64) -> Option<u64> {
        if vmcs::read(guest::CR0) & CR0_PG == 0 {
            return Some(linear);
        }
        // Only 4-level IA-32e paging is walked (SDM Vol. 3A, 5.5); 32-bit and PAE guests and
        // 5-level paging are refused, so their MMIO stops the partition with a report.
        if vmcs::read(guest::IA32_EFER) & EFER_LMA == 0 || vmcs::read(guest::CR4) & CR4_LA57 != 0 {
            return None;
        }
        let mut table = vmcs::read(guest::CR3) & ADDR_MASK;
        for level in (1..=3).rev() {
            let entry = self.read_u64(table + ((linear >> (12 + 9 * level)) & 0x1ff) * 8)?;
            if entry & PRESENT == 0 {
                return None;
            }
            let page_bits = 12 + 9 * level;
            if level < 3 && entry & PAGE_SIZE_BIT != 0 {
                let mask = (1u64 << page_bits) - 1;
                return Some((entry & ADDR_MASK & !mask) | (linear & mask));
            }
            table = entry & ADDR_MASK;
        }
        let entry = self.read_u64(table + ((linear >> 12) & 0x1ff) * 8)?;
        (entry & PRESENT != 0).then_some((entry & ADDR_MASK) | (linear & 0xfff))
    }

    /// Up to [`MAX_LEN`] instruction bytes at the guest's RIP (fewer at the end of its memory).
    pub fn fetch_instruction(&self, rip: u64) -> ([u8; MAX_LEN], usize) {
        let mut bytes = [0u8; MAX_LEN];
        let mut done = 0;
        while done < MAX_LEN {
            let linear = rip.wrapping_add(done as u64);
            let in_page = ((PAGE - (linear % PAGE)) as usize).min(MAX_LEN - done);
            let Some(src) = self
                .translate(linear)
                .and_then(|gpa| self.host(gpa, in_page as u64))
            else {
                break;
            };
            // SAFETY: as in `read_u64`; `host` checked that the whole range is in one region.
            unsafe { core::ptr::copy_nonoverlapping(src, bytes[done..].as_mut_ptr(), in_page) };
            done += in_page;
        }
        (bytes, done)
    }
}
