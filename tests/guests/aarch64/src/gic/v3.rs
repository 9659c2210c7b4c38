//! GICv3 specifics (Arm IHI 0069): one redistributor per vCPU, woken before use, and the CPU
//! interface's Group 1 system registers.

use core::arch::asm;

use crate::cpu::{mmio_read32, mmio_write32};

const GICR_WAKER: u64 = 0x14;
/// GICR_WAKER.ProcessorSleep.
const PROCESSOR_SLEEP: u32 = 1 << 1;
/// A redistributor's SGI frame follows its RD_base frame.
const SGI_FRAME: u64 = 0x1_0000;
/// GICD_CTLR.EnableGrp1A (with affinity routing, the Non-secure Group 1 enable).
const ENABLE_GRP1: u32 = 1 << 1;

fn redistributor(first: u64, stride: u64, vcpu: u64) -> u64 {
    first + vcpu * stride
}

pub(super) fn sgi_frame(first: u64, stride: u64, vcpu: u64) -> u64 {
    redistributor(first, stride, vcpu) + SGI_FRAME
}

/// Clears vCPU `vcpu`'s redistributor's ProcessorSleep, so it forwards its interrupts.
pub(super) fn wake(first: u64, stride: u64, vcpu: u64) {
    let waker = redistributor(first, stride, vcpu) + GICR_WAKER;
    mmio_write32(waker, mmio_read32(waker) & !PROCESSOR_SLEEP);
}

/// Enables Group 1 in the distributor and the CPU interface, at every priority.
pub(super) fn forward(distributor: u64) {
    mmio_write32(distributor, mmio_read32(distributor) | ENABLE_GRP1);
    // SAFETY: the guest's own (virtual) CPU interface: all priorities, Group 1 on.
    unsafe {
        asm!("msr icc_pmr_el1, {}", in(reg) 0xffu64, options(nomem, nostack));
        asm!("msr icc_igrpen1_el1, {}", in(reg) 1u64, options(nomem, nostack));
        asm!("isb", options(nomem, nostack));
    }
}

/// Writes `value` to ICC_SGI1R_EL1.
pub(super) fn send_sgi(value: u64) {
    // SAFETY: sends SGIs; the hypervisor decides who gets them.
    unsafe { asm!("msr icc_sgi1r_el1, {}", "isb", in(reg) value, options(nomem, nostack)) }
}

/// Reads ICC_IAR1_EL1: the INTID, now active.
pub(super) fn acknowledge() -> u32 {
    let v: u64;
    // SAFETY: reading ICC_IAR1_EL1 acknowledges an interrupt, which the caller handles.
    unsafe { asm!("mrs {}, icc_iar1_el1", out(reg) v, options(nomem, nostack)) };
    v as u32
}

/// Writes ICC_EOIR1_EL1 for `intid`.
pub(super) fn end(intid: u32) {
    // SAFETY: ends the interrupt this CPU acknowledged.
    unsafe { asm!("msr icc_eoir1_el1, {}", in(reg) u64::from(intid), options(nomem, nostack)) }
}

/// Reads ICC_HPPIR1_EL1.
pub(super) fn highest_pending() -> u32 {
    let v: u64;
    // SAFETY: reading HPPIR has no side effect.
    unsafe { asm!("mrs {}, icc_hppir1_el1", out(reg) v, options(nomem, nostack)) };
    v as u32
}

/// ICC_CTLR_EL1.EOImode = 1 (bit 1): ICC_EOIR1_EL1 drops priority, deactivation is separate.
pub(super) fn split_priority_drop() {
    // SAFETY: changes how this vCPU's own CPU interface ends interrupts; the caller deactivates.
    unsafe { asm!("msr icc_ctlr_el1, {}", "isb", in(reg) 2u64, options(nomem, nostack)) };
}
