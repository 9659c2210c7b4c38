//! Changing the guest's own paging and segments: the boot tables (PML4 at 0x1000, PDPT at
//! 0x2000, page directories from 0x3000, 2 MiB pages identity-mapping 4 GiB) and a GDT with the
//! segments the attacks switch to.

use core::arch::asm;
use core::cell::UnsafeCell;

use tandem_guest::cpu::DescriptorPointer;

/// The page-directory entry for linear 2-4 MiB.
const PDE_SECOND_BLOCK: u64 = 0x3000 + 8;
const PRESENT_WRITABLE: u64 = 0b11;
const BLOCK: u64 = 0x20_0000;

#[repr(C, align(4096))]
struct PageTable(UnsafeCell<[u64; 512]>);
// SAFETY: one vCPU; written before the CPU walks it.
unsafe impl Sync for PageTable {}
static SECOND_BLOCK_PT: PageTable = PageTable(UnsafeCell::new([0; 512]));

/// 64-bit code 0x08 and data 0x10 as the runtime's GDT has them; 0x18 is 32-bit code with the
/// base patched in by `enter_compat`; 0x20 is 32-bit code at base 0, 0x28 16-bit code and 0x30
/// 16-bit data at base 0x8000 (the real-mode switch).
struct Gdt(UnsafeCell<[u64; 7]>);
// SAFETY: as `PageTable`.
unsafe impl Sync for Gdt {}
static GDT: Gdt = Gdt(UnsafeCell::new([
    0,
    0x00af_9a00_0000_ffff,
    0x00cf_9200_0000_ffff,
    0,
    0x00cf_9a00_0000_ffff,
    0x0000_9a00_8000_ffff,
    0x0000_9200_8000_ffff,
]));

pub const COMPAT_CS: u64 = 0x18;
pub const FLAT_CODE32: u64 = 0x20;

fn write_u64(addr: u64, value: u64) {
    // SAFETY: the guest's own paging structures, identity-mapped.
    unsafe { core::ptr::write_volatile(addr as *mut u64, value) }
}

fn reload_cr3() {
    // SAFETY: same tables, flushing the TLB.
    unsafe { asm!("mov {0}, cr3", "mov cr3, {0}", out(reg) _, options(nostack)) }
}

/// Maps linear 2-4 MiB with 4 KiB pages (identity) instead of one 2 MiB page.
pub fn split_second_block() {
    // SAFETY: not in use by the CPU until the directory entry below points at it.
    let pt = unsafe { &mut *SECOND_BLOCK_PT.0.get() };
    for (i, e) in pt.iter_mut().enumerate() {
        *e = (BLOCK + ((i as u64) << 12)) | PRESENT_WRITABLE;
    }
    write_u64(
        PDE_SECOND_BLOCK,
        SECOND_BLOCK_PT.0.get() as u64 | PRESENT_WRITABLE,
    );
    reload_cr3();
}

/// Marks the 4 KiB page holding `addr` not present, with no INVLPG: a TLB entry stays valid.
pub fn unmap_without_flush(addr: u64) {
    let index = ((addr - BLOCK) >> 12) as usize;
    // SAFETY: the table `split_second_block` installed; a plain store, as a guest kernel's.
    unsafe { (*SECOND_BLOCK_PT.0.get())[index] = 0 };
}

/// Points the directory entry for 2-4 MiB at a page table at guest-physical `gpa`.
pub fn second_block_table_at(gpa: u64) {
    write_u64(PDE_SECOND_BLOCK, gpa | PRESENT_WRITABLE);
    reload_cr3();
}

pub fn write_code(at: u64, code: &[u8]) {
    for (i, b) in code.iter().enumerate() {
        // SAFETY: free guest memory in the 2-4 MiB block, above the image.
        unsafe { core::ptr::write_volatile((at + i as u64) as *mut u8, *b) };
    }
}

/// Loads the attack GDT, keeping 0x08 and 0x10 as they are.
pub fn load_gdt() {
    let ptr = DescriptorPointer {
        limit: (core::mem::size_of::<[u64; 7]>() - 1) as u16,
        base: GDT.0.get() as u64,
    };
    // SAFETY: selectors in use (0x08, 0x10) keep their meaning.
    unsafe { asm!("lgdt [{}]", in(reg) &ptr, options(nostack)) }
}

/// A 4 GiB 32-bit code descriptor with `base` (SDM Vol. 3A, 3.4.5).
fn code32(base: u64) -> u64 {
    0x00cf_9a00_0000_ffff | (base & 0xff_ffff) << 16 | (base >> 24 & 0xff) << 56
}

/// Far-returns to compatibility mode at `base`:`eip` with EAX = `eax`; never returns.
pub fn enter_compat(base: u64, eip: u64, eax: u64) -> ! {
    // SAFETY: before the GDT is loaded.
    unsafe { (*GDT.0.get())[3] = code32(base) };
    load_gdt();
    // SAFETY: the code at base + eip is the guest's own and does not return.
    unsafe {
        asm!("push {cs}", "push {eip}", "retfq",
             cs = in(reg) COMPAT_CS, eip = in(reg) eip, in("rax") eax, options(noreturn))
    }
}
