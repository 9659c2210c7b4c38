//! Reading the instruction a guest was executing when it exited: its code segment and mode from
//! the VMCS, CS:RIP translated through the guest's own page tables (4-level long-mode paging, or
//! none), then through its memory regions.

use tandem_core::addr::GuestPhysAddr;
use tandem_core::config::MemoryRegion;
use tandem_x86_insn::{MAX_LEN, Mode};
use x86_64::registers::control::{Cr0Flags, Cr4Flags};
use x86_64::registers::model_specific::EferFlags;
use x86_64::registers::rflags::RFlags;
use x86_64::structures::paging::PageTableFlags;

use super::fields::guest;
use super::vmcs;

/// Bits 51:12 of a paging-structure entry: the next table or the page (SDM Vol. 3A, 5.5).
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
const PAGE: u64 = 0x1000;
/// CS is segment 1 in the VMCS's ES, CS, SS, DS, FS, GS runs.
const CS: u32 = 1;
/// Segment access rights as the VMCS holds them (SDM Vol. 3C, 25.4.1, Table 25-2).
const ACCESS_L: u64 = 1 << 13;
const ACCESS_DB: u64 = 1 << 14;

/// Why the instruction's bytes could not all be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchStop {
    /// The guest's page tables do not map this linear address (or use a paging mode the walk
    /// does not implement).
    Untranslated { linear: u64 },
    /// The linear address maps to guest-physical memory the partition does not own.
    OutsideMemory { gpa: u64 },
    /// The offset is past the code segment's limit.
    PastLimit { offset: u64 },
}

impl defmt::Format for FetchStop {
    fn format(&self, f: defmt::Formatter) {
        match *self {
            FetchStop::Untranslated { linear } => {
                defmt::write!(f, "linear address {=u64:#x} is not mapped", linear)
            }
            FetchStop::OutsideMemory { gpa } => {
                defmt::write!(f, "GPA {=u64:#x} is outside the partition", gpa)
            }
            FetchStop::PastLimit { offset } => {
                defmt::write!(f, "offset {=u64:#x} is past the CS limit", offset)
            }
        }
    }
}

/// The guest's code segment, as far as decoding needs it.
#[derive(Debug, Clone, Copy)]
pub struct CodeSegment {
    pub mode: Mode,
    base: u64,
    limit: u64,
}

impl CodeSegment {
    /// The current one; `None` for 16-bit code (real mode, virtual-8086 mode, a 16-bit
    /// segment), which the decoder does not handle. IA32_EFER.LMA with CS.L is 64-bit mode,
    /// where the CS base and limit do not apply; otherwise CS.D selects 32-bit code (SDM Vol. 3A,
    /// 3.4.5 and 5.2.1).
    pub fn current() -> Option<Self> {
        let access = vmcs::read(guest::ES_ACCESS.nth(CS));
        let lma = EferFlags::from_bits_retain(vmcs::read(guest::IA32_EFER))
            .contains(EferFlags::LONG_MODE_ACTIVE);
        if lma && access & ACCESS_L != 0 {
            return Some(Self {
                mode: Mode::Bits64,
                base: 0,
                limit: u64::MAX,
            });
        }
        let protected = Cr0Flags::from_bits_retain(vmcs::read(guest::CR0))
            .contains(Cr0Flags::PROTECTED_MODE_ENABLE);
        let v86 =
            RFlags::from_bits_retain(vmcs::read(guest::RFLAGS)).contains(RFlags::VIRTUAL_8086_MODE);
        (protected && !v86 && access & ACCESS_DB != 0).then(|| Self {
            mode: Mode::Bits32,
            base: vmcs::read(guest::ES_BASE.nth(CS)) & u64::from(u32::MAX),
            limit: vmcs::read(guest::ES_LIMIT.nth(CS)) & u64::from(u32::MAX),
        })
    }

    /// How many of the [`MAX_LEN`] bytes at offset `rip` lie within the segment limit: the CPU
    /// cannot have fetched the others. 64-bit mode has no limit (SDM Vol. 3A, 5.3.1).
    fn within_limit(&self, rip: u64) -> usize {
        match self.mode {
            Mode::Bits64 => MAX_LEN,
            Mode::Bits32 => {
                let room = (self.limit + 1).saturating_sub(rip & u64::from(u32::MAX));
                room.min(MAX_LEN as u64) as usize
            }
        }
    }

    /// The linear address of byte `offset` at offset `rip`: 32-bit code adds the base and wraps
    /// at 4 GiB.
    fn linear(&self, rip: u64, offset: usize) -> u64 {
        match self.mode {
            Mode::Bits64 => rip.wrapping_add(offset as u64),
            Mode::Bits32 => {
                (self.base + (rip & u64::from(u32::MAX)) + offset as u64) & u64::from(u32::MAX)
            }
        }
    }
}

/// The instruction bytes read at CS:RIP, and why the read stopped short of [`MAX_LEN`].
pub struct Fetched {
    pub bytes: [u8; MAX_LEN],
    pub len: usize,
    pub stop: Option<FetchStop>,
}

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

    /// Up to [`MAX_LEN`] instruction bytes at `cs`:`rip`, a page at a time; fewer, with the
    /// reason, where a byte cannot be reached. The decoder checks whether it needed them.
    pub fn fetch_instruction(&self, cs: &CodeSegment, rip: u64) -> Fetched {
        let mut fetched = Fetched {
            bytes: [0; MAX_LEN],
            len: 0,
            stop: None,
        };
        let end = cs.within_limit(rip);
        while fetched.len < end {
            match self.fetch_chunk(
                cs.linear(rip, fetched.len),
                &mut fetched.bytes[fetched.len..end],
            ) {
                Ok(n) => fetched.len += n,
                Err(stop) => {
                    fetched.stop = Some(stop);
                    return fetched;
                }
            }
        }
        if end < MAX_LEN {
            fetched.stop = Some(FetchStop::PastLimit {
                offset: (rip & u64::from(u32::MAX)) + end as u64,
            });
        }
        fetched
    }

    /// Fills `dst` from guest-linear `linear` (a descriptor table, say), a page at a time;
    /// `false` if a byte cannot be reached.
    pub fn read_linear(&self, linear: u64, dst: &mut [u8]) -> bool {
        let mut done = 0;
        while done < dst.len() {
            match self.fetch_chunk(linear.wrapping_add(done as u64), &mut dst[done..]) {
                Ok(n) => done += n,
                Err(_) => return false,
            }
        }
        true
    }

    /// Copies the bytes at `linear` up to the end of its page (at most `dst.len()`) into `dst`.
    fn fetch_chunk(&self, linear: u64, dst: &mut [u8]) -> Result<usize, FetchStop> {
        let n = ((PAGE - linear % PAGE) as usize).min(dst.len());
        let gpa = self
            .translate(linear)
            .ok_or(FetchStop::Untranslated { linear })?;
        let src = self
            .host(gpa, n as u64)
            .ok_or(FetchStop::OutsideMemory { gpa })?;
        // SAFETY: as in `read_u64`; `host` checked that all `n` bytes are in one region, and
        // `dst` holds at least `n`.
        unsafe { core::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), n) };
        Ok(n)
    }
}
