//! Reading the instruction a guest was executing when it exited: its RIP translated through the
//! guest's own page tables (4-level long-mode paging, or none), then through its memory regions.

use tandem_core::addr::GuestPhysAddr;
use tandem_core::config::MemoryRegion;
use tandem_x86_insn::MAX_LEN;
use x86_64::registers::control::{Cr0Flags, Cr4Flags};
use x86_64::registers::model_specific::EferFlags;
use x86_64::structures::paging::PageTableFlags;

use super::fields::guest;
use super::vmcs;

/// Bits 51:12 of a paging-structure entry: the next table or the page (SDM Vol. 3A, 5.5).
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
        if !Cr0Flags::from_bits_retain(vmcs::read(guest::CR0)).contains(Cr0Flags::PAGING) {
            return Some(linear);
        }
        // Only 4-level IA-32e paging is walked (SDM Vol. 3A, 5.5); 32-bit and PAE guests and
        // 5-level paging are refused, so their MMIO stops the partition with a report.
        let efer = EferFlags::from_bits_retain(vmcs::read(guest::IA32_EFER));
        let cr4 = Cr4Flags::from_bits_retain(vmcs::read(guest::CR4));
        if !efer.contains(EferFlags::LONG_MODE_ACTIVE) || cr4.contains(Cr4Flags::L5_PAGING) {
            return None;
        }
        let mut table = vmcs::read(guest::CR3) & ADDR_MASK;
        for level in (1..=3).rev() {
            let entry = self.read_u64(table + ((linear >> (12 + 9 * level)) & 0x1ff) * 8)?;
            let flags = PageTableFlags::from_bits_retain(entry);
            if !flags.contains(PageTableFlags::PRESENT) {
                return None;
            }
            let page_bits = 12 + 9 * level;
            if level < 3 && flags.contains(PageTableFlags::HUGE_PAGE) {
                let mask = (1u64 << page_bits) - 1;
                return Some((entry & ADDR_MASK & !mask) | (linear & mask));
            }
            table = entry & ADDR_MASK;
        }
        let entry = self.read_u64(table + ((linear >> 12) & 0x1ff) * 8)?;
        PageTableFlags::from_bits_retain(entry)
            .contains(PageTableFlags::PRESENT)
            .then_some((entry & ADDR_MASK) | (linear & 0xfff))
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
