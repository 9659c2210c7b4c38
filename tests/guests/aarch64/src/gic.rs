//! The guest's side of the GICv3: its redistributor and distributor (emulated by Tandem at the
//! addresses the device tree names) and the CPU interface's system registers (which the
//! hardware virtualizes).

use core::arch::asm;

use crate::cpu::{mmio_read32, mmio_write32};

const GICD: u64 = 0x0800_0000;
const GICR: u64 = 0x080a_0000;
const GICR_WAKER: u64 = GICR + 0x14;
/// vCPU n's redistributor is at GICR + n * this (the board's stride).
const GICR_STRIDE: u64 = 0x2_0000;
/// The redistributor's SGI frame, laid out like the distributor for INTIDs 0-31.
const GICR_SGI: u64 = GICR + 0x1_0000;
const ISENABLER: u64 = 0x100;
const ISPENDR: u64 = 0x200;
const IPRIORITYR: u64 = 0x400;

pub const VTIMER: u32 = 27;
/// The EL1 physical timer's PPI (the device tree's second timer interrupt).
pub const PTIMER: u32 = 30;
/// The PMU's overflow interrupt (QEMU `virt`'s PPI 7), for a partition that uses the PMU.
pub const PMU: u32 = 23;
/// The shared peripheral interrupt the guests ask `TIMER_SET` to raise.
pub const HYPERCALL_TIMER: u32 = 48;

/// Wakes the redistributor and enables `ppi` at priority 0x80, with Group 1 interrupts.
pub fn enable_ppi(ppi: u32) {
    mmio_write32(GICR_WAKER, mmio_read32(GICR_WAKER) & !(1 << 1));
    enable(GICR_SGI, ppi, 0x80);
}

/// Wakes vCPU `vcpu`'s redistributor and enables its SGI or PPI `intid` at `priority`, with Group
/// 1 interrupts; a vCPU may only do this to its own.
pub fn enable_private(vcpu: u64, intid: u32, priority: u8) {
    let rd = GICR + vcpu * GICR_STRIDE;
    mmio_write32(rd + 0x14, mmio_read32(rd + 0x14) & !(1 << 1));
    enable(rd + 0x1_0000, intid, priority);
}

/// Writes `value` to ICC_SGI1R_EL1: INTID in bits 27:24, target list in 15:0, Aff1 in 23:16,
/// IRM in bit 40, RS in 47:44 (Arm IHI 0069, 12.2.22).
pub fn send_sgi(value: u64) {
    // SAFETY: sends SGIs; the hypervisor decides who gets them.
    unsafe { asm!("msr icc_sgi1r_el1, {}", "isb", in(reg) value, options(nomem, nostack)) }
}

/// Enables the shared peripheral interrupt `spi` at `priority`, with Group 1 interrupts.
pub fn enable_spi(spi: u32, priority: u8) {
    enable(GICD, spi, priority);
}

/// Makes the shared peripheral interrupts whose bits are set in `bits`, from `first` (a multiple
/// of 32), pending with one write.
pub fn set_pending(first: u32, bits: u32) {
    mmio_write32(GICD + ISPENDR + u64::from(first / 32) * 4, bits);
}

/// Sets `intid`'s priority and enable bit in the frame at `base`, then enables Group 1 in the
/// distributor and the CPU interface.
fn enable(base: u64, intid: u32, priority: u8) {
    let prio = base + IPRIORITYR + u64::from(intid & !3);
    let shift = 8 * (intid & 3);
    mmio_write32(
        prio,
        (mmio_read32(prio) & !(0xff << shift)) | u32::from(priority) << shift,
    );
    mmio_write32(
        base + ISENABLER + u64::from(intid / 32) * 4,
        1 << (intid % 32),
    );
    mmio_write32(GICD, mmio_read32(GICD) | 1 << 1);
    // SAFETY: the guest's own (virtual) CPU interface: all priorities, Group 1 on.
    unsafe {
        asm!("msr icc_pmr_el1, {}", in(reg) 0xffu64, options(nomem, nostack));
        asm!("msr icc_igrpen1_el1, {}", in(reg) 1u64, options(nomem, nostack));
        asm!("isb", options(nomem, nostack));
    }
}

/// Acknowledges the highest-priority pending interrupt.
pub fn acknowledge() -> u32 {
    let v: u64;
    // SAFETY: reading ICC_IAR1_EL1 acknowledges an interrupt, which the caller handles.
    unsafe { asm!("mrs {}, icc_iar1_el1", out(reg) v, options(nomem, nostack)) };
    v as u32
}

/// Ends (drops priority and deactivates) an acknowledged interrupt.
pub fn end(intid: u32) {
    // SAFETY: EOImode 0: ends the interrupt this CPU acknowledged.
    unsafe { asm!("msr icc_eoir1_el1, {}", in(reg) u64::from(intid), options(nomem, nostack)) }
}
