//! Placing the ledger: per-CPU slots of plain `#[repr(C)]` data behind the recovery crate's
//! header, in a fixed region at the top of the hypervisor's memory that no boot path clears (it
//! is outside the image and its `.bss`). Each backend chooses its slot type.

use core::mem::size_of;

use tandem_core::config::{MAX_CPUS, MAX_FT_PAIRS, PAGE_SIZE, PhysRange};
use tandem_core::journal::ExitJournal;
use tandem_core::record::VcpuRecord;
use tandem_recovery::cause::ResetCause;
use tandem_recovery::ledger::{Header, Mismatch};

use crate::frames;
use crate::recovery::control::Control;
use crate::replication::PairAreas;

/// A CPU's ledger slot: the portable record and the backend's vCPU state. Plain `#[repr(C)]`
/// data, valid when all-zero.
#[repr(C)]
pub struct VcpuSlot<S> {
    pub state: S,
    pub record: VcpuRecord,
    /// The exit in progress, for a recovery to roll back or complete.
    pub journal: ExitJournal,
    /// Non-zero when a recovery found this vCPU's preserved state unusable: its partition is
    /// stopped instead of resumed.
    pub failed: u32,
}

#[repr(C)]
struct Ledger<S> {
    header: Header,
    /// The recovery's shared state (`crate::recovery::control`).
    control: Control,
    slots: [S; MAX_CPUS],
    /// The fault-tolerant pairs' log rings and arbiter words.
    pairs: PairAreas,
    /// Each pair's re-protection snapshot: a slot's contents, from the copy that went live to
    /// its spare.
    handoffs: [S; MAX_FT_PAIRS],
}

/// Bytes a ledger of `S` slots occupies, rounded up to whole pages.
pub const fn size<S>() -> u64 {
    (size_of::<Ledger<S>>() as u64).next_multiple_of(PAGE_SIZE)
}

/// Formats the ledger at `base` for a cold boot.
///
/// # Safety
/// `base` is the ledger region: page-aligned, identity-mapped, [`size::<S>`] bytes of hypervisor
/// memory nothing else uses; no CPU holds a slot yet; `S` is plain data for which all-zero
/// bytes are a valid value.
pub unsafe fn format<S>(base: u64, clock: (u64, u64)) {
    let ledger = base as *mut Ledger<S>;
    // SAFETY: the caller's contract.
    unsafe {
        if let Some(cause) = (*ledger).header.last_reset_cause() {
            defmt::warn!(
                "the previous run over this memory ended in a full reset: {=str}",
                cause.describe()
            );
        }
        core::ptr::write_bytes(ledger as *mut u8, 0, size_of::<Ledger<S>>());
        (*ledger).header =
            Header::formatted(MAX_CPUS as u32, size_of::<S>() as u32, clock.0, clock.1);
    }
}

/// The address of the recovery control block in the ledger at `base`.
pub fn control<S>(base: u64) -> u64 {
    base + core::mem::offset_of!(Ledger<S>, control) as u64
}

/// Re-attaches the ledger at `base` after a recovery: checks its header, counts the boot.
pub fn attach<S>(base: u64) -> Result<u32, Mismatch> {
    let ledger = base as *mut Ledger<S>;
    // SAFETY: `base` is the ledger `lay_out` placed; only the recovery's owner calls this, with
    // every other CPU stopped, so nothing else touches the header.
    unsafe {
        (*ledger)
            .header
            .attach(MAX_CPUS as u32, size_of::<S>() as u32)
    }
}

/// The boots the ledger at `base` counted.
pub fn boots<S>(base: u64) -> u32 {
    let ledger = base as *const Ledger<S>;
    // SAFETY: as in `attach`; a plain read of a word.
    unsafe { (*ledger).header.boots() }
}

/// Notes in the ledger at `base` why the machine is about to be reset in full.
pub fn set_reset_cause<S>(base: u64, cause: ResetCause) {
    let ledger = base as *mut Ledger<S>;
    // SAFETY: as in `attach`: the failing owner, the last to run.
    unsafe { (*ledger).header.set_reset_cause(cause) }
}

/// The slot of CPU `cpu` in the ledger at `base`.
///
/// # Safety
/// The ledger at `base` was formatted with the same `S`, and only CPU `cpu` calls this, once,
/// so the returned reference is the only one to that slot.
pub unsafe fn slot<S>(base: u64, cpu: usize) -> &'static mut S {
    let ledger = base as *mut Ledger<S>;
    // SAFETY: the caller's contract; the ledger lives for the whole run.
    unsafe { &mut (*ledger).slots[cpu] }
}

/// The fault-tolerant pairs' shared areas in the ledger at `base`.
///
/// # Safety
/// The ledger at `base` was formatted with the same `S`, and this is called once, on the
/// bootstrap CPU, so the returned reference is the only one to the areas.
pub unsafe fn pairs<S>(base: u64) -> &'static mut PairAreas {
    let ledger = base as *mut Ledger<S>;
    // SAFETY: the caller's contract; the ledger lives for the whole run.
    unsafe { &mut (*ledger).pairs }
}

/// Pair `pair`'s re-protection snapshot in the ledger at `base`.
///
/// # Safety
/// The ledger at `base` was formatted with the same `S`; `pair` < [`MAX_FT_PAIRS`]; the pair's
/// live copy calls this before it announces the snapshot (`replication::hand_off`) and its spare
/// only after, so at most one CPU holds the returned reference at a time.
pub unsafe fn handoff<S>(base: u64, pair: usize) -> &'static mut S {
    let ledger = base as *mut Ledger<S>;
    // SAFETY: the caller's contract; the ledger lives for the whole run.
    unsafe { &mut (*ledger).handoffs[pair] }
}

/// Copies bytes of pair `pair`'s re-protection snapshot, from `offset`, out into `out` or in from
/// `data`: across boards the snapshot travels as bytes, and the boards run the same image, so
/// the same layout. Bytes past the snapshot's end are left alone.
///
/// # Safety
/// As for [`handoff`], and no reference to the snapshot is held meanwhile.
pub unsafe fn handoff_bytes<S>(base: u64, pair: usize, offset: usize, bytes: HandoffBytes<'_>) {
    let ledger = base as *mut Ledger<S>;
    let len = match &bytes {
        HandoffBytes::Out(out) => out.len(),
        HandoffBytes::In(data) => data.len(),
    };
    if offset
        .checked_add(len)
        .is_none_or(|end| end > size_of::<S>())
    {
        return;
    }
    // SAFETY: the caller's contract; the range lies inside the snapshot (checked above). The
    // ledger is memory the hypervisor formatted with zeros, so every byte of it, padding too,
    // holds a value; and `S` is plain data valid for any bytes the same image wrote.
    unsafe {
        let at = (&raw mut (*ledger).handoffs[pair]).cast::<u8>().add(offset);
        match bytes {
            HandoffBytes::Out(out) => core::ptr::copy_nonoverlapping(at, out.as_mut_ptr(), len),
            HandoffBytes::In(data) => core::ptr::copy_nonoverlapping(data.as_ptr(), at, len),
        }
    }
}

/// Which way [`handoff_bytes`] copies.
pub enum HandoffBytes<'a> {
    Out(&'a mut [u8]),
    In(&'a [u8]),
}

/// The image leaves no room for the ledger in the hypervisor's memory range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DoesNotFit;

/// Lays out the hypervisor's own memory: the frame pool from the end of the image up to the
/// ledger at the top of `hypervisor`, which is formatted for a cold boot. Returns the ledger's
/// base.
///
/// # Safety
/// `hypervisor` is the board's (validated) hypervisor range, identity-mapped and owned by the
/// hypervisor; `image_end` is where the loaded image ends inside it; runs once, on the bootstrap
/// CPU, before any other CPU starts; `S` is as for [`format`].
pub unsafe fn lay_out<S>(
    hypervisor: &PhysRange,
    image_end: u64,
    clock: (u64, u64),
) -> Result<u64, DoesNotFit> {
    let base = hypervisor.end() - size::<S>();
    if image_end > base {
        return Err(DoesNotFit);
    }
    frames::init(image_end, base);
    // SAFETY: the ledger range is the top of the hypervisor's own memory, above the image and the
    // frame pool, and no CPU uses it yet (the caller's contract).
    unsafe { format::<S>(base, clock) };
    Ok(base)
}
