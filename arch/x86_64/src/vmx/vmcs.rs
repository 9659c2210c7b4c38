//! The VMX instructions that manage VMCSs and read and write their fields (SDM Vol. 3C, 31.3).

use core::arch::asm;

use x86_64::registers::rflags::RFlags;

use super::fields::{VmcsField, ro};
use super::reasons::VmInstructionError;

/// Why a VMX instruction failed (SDM Vol. 3C, 31.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum VmFail {
    /// VMfailInvalid: no current VMCS (CF=1).
    Invalid,
    /// VMfailValid: failed with this VM-instruction error (ZF=1).
    Valid(VmInstructionError),
}

/// A VMX instruction failed if it set CF (VMfailInvalid) or ZF (VMfailValid).
const VMFAIL_FLAGS: RFlags = RFlags::CARRY_FLAG.union(RFlags::ZERO_FLAG);

/// One test on the exit path; which failure it was is worked out only when there was one.
#[inline]
fn check(rflags: u64) -> Result<(), VmFail> {
    if RFlags::from_bits_retain(rflags).intersects(VMFAIL_FLAGS) {
        Err(failure(rflags))
    } else {
        Ok(())
    }
}

#[cold]
fn failure(rflags: u64) -> VmFail {
    if RFlags::from_bits_retain(rflags).contains(RFlags::CARRY_FLAG) {
        VmFail::Invalid
    } else {
        VmFail::Valid(VmInstructionError(read(ro::INSTRUCTION_ERROR) as u32))
    }
}

/// Enters VMX operation with the VMXON region at `phys`.
///
/// # Safety
/// CR4.VMXE is set, CR0/CR4 meet the fixed-bit rules, and `phys` is a 4 KiB frame that holds the
/// VMCS revision identifier and is used for nothing else.
pub unsafe fn vmxon(phys: u64) -> Result<(), VmFail> {
    let rflags: u64;
    // SAFETY: the caller's contract.
    unsafe { asm!("vmxon [{}]", "pushfq", "pop {}", in(reg) &phys, lateout(reg) rflags) };
    check(rflags)
}

/// Initialises the VMCS at `phys` and makes it inactive.
///
/// # Safety
/// `phys` is a VMCS frame owned by the caller, in VMX operation.
pub unsafe fn vmclear(phys: u64) -> Result<(), VmFail> {
    let rflags: u64;
    // SAFETY: the caller's contract.
    unsafe { asm!("vmclear [{}]", "pushfq", "pop {}", in(reg) &phys, lateout(reg) rflags) };
    check(rflags)
}

/// Makes the VMCS at `phys` current on this CPU.
///
/// # Safety
/// As [`vmclear`]; the VMCS is not current on another CPU.
pub unsafe fn vmptrld(phys: u64) -> Result<(), VmFail> {
    let rflags: u64;
    // SAFETY: the caller's contract.
    unsafe { asm!("vmptrld [{}]", "pushfq", "pop {}", in(reg) &phys, lateout(reg) rflags) };
    check(rflags)
}

/// This CPU's current VMCS (VMPTRST), if it has one. The CPU must be in VMX operation, outside
/// which VMPTRST raises #UD.
pub fn current() -> Option<u64> {
    let mut pointer: u64 = u64::MAX;
    // SAFETY: VMPTRST only stores the current-VMCS pointer into `pointer`; the caller's contract
    // keeps it from faulting.
    unsafe { asm!("vmptrst [{}]", in(reg) &mut pointer, options(nostack)) };
    (pointer != u64::MAX).then_some(pointer)
}

/// Reads a field of the current VMCS; 0 if there is none.
#[inline]
pub fn read(field: VmcsField) -> u64 {
    let value: u64;
    // SAFETY: VMREAD only reads the current VMCS and fails harmlessly without one.
    unsafe {
        asm!("vmread {}, {}", out(reg) value, in(reg) u64::from(field.encoding()), options(nostack))
    };
    value
}

/// Reads a field of the current VMCS, failing where [`read`] would return a made-up value (no
/// current VMCS, or a field this CPU does not have).
pub fn try_read(field: VmcsField) -> Result<u64, VmFail> {
    let (value, rflags): (u64, u64);
    // SAFETY: as in `read`.
    unsafe {
        asm!("vmread {}, {}", "pushfq", "pop {}", out(reg) value, in(reg) u64::from(field.encoding()),
             lateout(reg) rflags)
    };
    check(rflags).map(|()| value)
}

/// Writes a field of the current VMCS.
#[inline]
pub fn write(field: VmcsField, value: u64) -> Result<(), VmFail> {
    let rflags: u64;
    // SAFETY: VMWRITE only changes the current VMCS, which belongs to the vCPU this CPU runs;
    // host-state fields are only written with this CPU's own values.
    unsafe {
        asm!("vmwrite {}, {}", "pushfq", "pop {}", in(reg) u64::from(field.encoding()), in(reg) value,
             lateout(reg) rflags)
    };
    check(rflags)
}

/// INVEPT all-context (type 2): drops cached EPT translations on this CPU.
pub fn invept_all() {
    let descriptor = [0u64; 2];
    // SAFETY: invalidation only drops cached translations.
    unsafe { asm!("invept {}, [{}]", in(reg) 2u64, in(reg) &descriptor, options(nostack)) };
}

/// INVVPID all-context (type 2).
pub fn invvpid_all() {
    let descriptor = [0u64; 2];
    // SAFETY: as above.
    unsafe { asm!("invvpid {}, [{}]", in(reg) 2u64, in(reg) &descriptor, options(nostack)) };
}
