//! The pristine copy of the hypervisor's code and read-only data (recovery.md 6.0 rule 3): taken
//! at cold boot into frames of the hypervisor's own memory (no partition's stage 2 maps them),
//! with its hash in the ledger (`tandem_hw::recovery::pristine`); a microreboot checks it and copies
//! it back over the image.
//!
//! The copy is mapped read-only (`el2_map`); the image itself lies in a read-write block of the
//! EL2 map (`boot`), so it is written in place. Instructions written through the data side are not seen by
//! instruction fetches until the data cache is cleaned to the point of unification and the
//! instruction caches are invalidated (Arm ARM B2, "Synchronization and coherency issues between
//! data and instruction accesses"): [`sync_instructions`].

use core::sync::atomic::Ordering;

use tandem_hw::frames::OutOfFrames;
use tandem_hw::recovery::control::Control;
use tandem_hw::recovery::pristine;
use tandem_recovery::cause::ResetCause;

use crate::sysreg::{isb, read_sysreg};
use crate::{boot, el2_map};

/// The image's code and read-only data, `[start, data)`, which the pristine copy holds.
fn code_range() -> (u64, u64) {
    (boot::image_range().0, boot::data_start())
}

/// Cold boot: the pristine copy of the code and read-only data; returns the bytes kept.
pub fn keep(control: &Control) -> Result<u64, OutOfFrames> {
    let (start, end) = code_range();
    let kept = pristine::keep(control, start, end)?;
    if let Some(copy) = pristine::copy_address() {
        el2_map::map_read_only(copy, kept)?;
    }
    Ok(kept)
}

/// Puts the code back: from the pristine copy once its hash checks (`reload`), or only the byte
/// an injection flipped. Every other CPU is stopped.
pub fn repair(control: &Control, reload: bool) -> Result<(), ResetCause> {
    let at = control.repair_at.swap(0, Ordering::AcqRel);
    if reload {
        let (start, end) = code_range();
        let pristine = pristine::checked(control, start, end)?;
        let len = end - start;
        // SAFETY: the image's code range, `len` bytes, writable in the EL2 map; the copy holds
        // what was there at cold boot, so the code running now (this function) is unchanged by
        // it, and the other CPUs, stopped, run none of it until released.
        unsafe {
            core::ptr::copy_nonoverlapping(pristine.as_ptr(), start as *mut u8, len as usize)
        };
        sync_instructions(start, len);
    } else if at != 0 {
        let byte = control.repair_byte.load(Ordering::Relaxed) as u8;
        // SAFETY: `at - 1` is a byte of the image's code an injection flipped.
        unsafe { ((at - 1) as *mut u8).write_volatile(byte) };
        sync_instructions(at - 1, 1);
    }
    Ok(())
}

/// Whether `at` is a byte of the image's code and read-only data.
pub fn is_code(at: u64) -> bool {
    let (start, end) = code_range();
    (start..end).contains(&at)
}

/// The code model's fault: flips bit `bit` of the code byte at `at`, keeping the byte for the
/// repair; nothing if `at` is not in the image's code.
pub fn flip_code_bit(at: u64, bit: u32) {
    if !is_code(at) {
        return;
    }
    // SAFETY: `at` is a byte of the image's code, writable in the EL2 map.
    let byte = unsafe { (at as *const u8).read_volatile() };
    pristine::keep_for_repair(at, byte);
    // SAFETY: as above; the flip is the injected fault, repaired once detected.
    unsafe { (at as *mut u8).write_volatile(byte ^ (1 << bit)) };
    sync_instructions(at, 1);
}

/// Makes `[start, start + len)`, just written as data, what every CPU fetches: DC CVAU over the
/// range, DSB ISH, IC IALLUIS (every CPU's instruction cache: the stopped CPUs run this code once
/// released), DSB ISH, ISB; each released CPU's own ISB is `rebuild_cpu`'s.
fn sync_instructions(start: u64, len: u64) {
    // CTR_EL0.DminLine: log2 of the smallest data cache line in words.
    let line = 4u64 << ((read_sysreg!("ctr_el0") >> 16) & 0xf);
    let mut addr = start & !(line - 1);
    while addr < start + len {
        // SAFETY: cleaning a line to the point of unification changes no memory contents.
        unsafe { core::arch::asm!("dc cvau, {}", in(reg) addr, options(nostack)) };
        addr += line;
    }
    // SAFETY: completes the cleaning, then invalidates the instruction caches of the inner
    // shareable domain, which only makes later fetches read memory again.
    unsafe { core::arch::asm!("dsb ish", "ic ialluis", "dsb ish", options(nostack)) };
    isb();
}
