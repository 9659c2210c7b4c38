//! The pristine copy's bookkeeping, the same on every backend (recovery.md 6.0 rule 3): the
//! image's code and read-only data copied into fresh frames at cold boot, with its hash in the
//! control block, and checked before a microreboot copies it back. The copying back itself
//! (write protection, cache maintenance) is the backend's.

use core::sync::atomic::Ordering;

use tandem_recovery::cause::ResetCause;
use tandem_recovery::image;

use super::control::Control;
use crate::frames::{self, OutOfFrames};

/// Copies `[start, end)`, the image's code and read-only data, to fresh frames and records
/// where and its hash in `control`; returns the bytes kept.
pub fn keep(control: &Control, start: u64, end: u64) -> Result<u64, OutOfFrames> {
    let len = end - start;
    let copy = frames::alloc_contiguous(len)?;
    // SAFETY: `copy` is `len` bytes of fresh frames; the source is the image's own code and
    // read-only data, identity-mapped and readable.
    let bytes = unsafe {
        core::ptr::copy_nonoverlapping(start as *const u8, copy as *mut u8, len as usize);
        core::slice::from_raw_parts(copy as *const u8, len as usize)
    };
    control.pristine[0].store(copy, Ordering::Relaxed);
    control.pristine[1].store(len, Ordering::Relaxed);
    control
        .pristine_hash
        .store(image::hash(bytes), Ordering::Relaxed);
    Ok(len)
}

/// Keeps the code byte at `at` as it was before an injection flips it, for the repair
/// (`Backend::repair_code`).
pub fn keep_for_repair(at: u64, byte: u8) {
    if let Some(control) = super::control() {
        control
            .repair_byte
            .store(u32::from(byte), Ordering::Relaxed);
        control.repair_at.store(at + 1, Ordering::Release);
    }
}

/// Where the pristine copy starts, once it was kept (for the injections that aim at it).
pub fn copy_address() -> Option<u64> {
    let copy = super::control()?.pristine[0].load(Ordering::Relaxed);
    (copy != 0).then_some(copy)
}

/// The pristine copy of `[start, end)`, if it is there and still matches its hash.
pub fn checked(control: &Control, start: u64, end: u64) -> Result<&'static [u8], ResetCause> {
    let (copy, len) = (
        control.pristine[0].load(Ordering::Relaxed),
        control.pristine[1].load(Ordering::Relaxed),
    );
    if copy == 0 || len != end - start {
        return Err(ResetCause::PristineCorrupt);
    }
    // SAFETY: `keep` made `len` bytes at `copy`, which stay the hypervisor's for the whole run.
    let pristine = unsafe { core::slice::from_raw_parts(copy as *const u8, len as usize) };
    if image::hash(pristine) != control.pristine_hash.load(Ordering::Relaxed) {
        return Err(ResetCause::PristineCorrupt);
    }
    Ok(pristine)
}
