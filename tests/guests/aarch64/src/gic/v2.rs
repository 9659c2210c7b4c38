//! GICv2 specifics (Arm IHI 0048B): SPI targets and SGIs in the distributor (registers in 4.3),
//! and the memory-mapped CPU interface (4.4), which for a guest is the virtual CPU interface in
//! the CPU interface's place, with the same layout (chapter 5). Tandem's distributor treats
//! every interrupt as Group 0, which the CPU interface signals as an IRQ while GICC_CTLR.FIQEn
//! stays 0.

use crate::cpu::{mmio_read32, mmio_write32};

/// GICD_CTLR.Enable: forward Group 0 interrupts to the CPU interfaces.
const GICD_ENABLE: u32 = 1;
const GICD_ITARGETSR: u64 = 0x800;
const GICD_SGIR: u64 = 0xf00;
const GICC_CTLR: u64 = 0x000;
const GICC_PMR: u64 = 0x004;
const GICC_IAR: u64 = 0x00c;
const GICC_EOIR: u64 = 0x010;
const GICC_HPPIR: u64 = 0x018;
/// GICC_CTLR.EnableGrp0: signal Group 0 interrupts.
const GICC_ENABLE_GRP0: u32 = 1;
/// GICC_CTLR.EOImode: GICC_EOIR only drops priority.
const GICC_EOI_MODE: u32 = 1 << 9;
/// GICC_IAR.InterruptID, bits 9:0; bits 12:10 are an SGI's source CPU.
const INTID: u32 = 0x3ff;

/// Sends SPI `spi` to CPU interface `cpu` only: its byte of GICD_ITARGETSRn.
pub(super) fn target(distributor: u64, spi: u32, cpu: u64) {
    let reg = distributor + GICD_ITARGETSR + u64::from(spi & !3);
    let shift = 8 * (spi & 3);
    let mask = 1u32 << cpu;
    mmio_write32(reg, (mmio_read32(reg) & !(0xff << shift)) | mask << shift);
}

/// Enables Group 0 in the distributor and the CPU interface, at every priority (GICC_PMR keeps
/// only the implemented bits, five on a virtual CPU interface: 0xf8).
pub(super) fn forward(distributor: u64, cpu: u64) {
    mmio_write32(distributor, mmio_read32(distributor) | GICD_ENABLE);
    mmio_write32(cpu + GICC_PMR, 0xff);
    mmio_write32(
        cpu + GICC_CTLR,
        mmio_read32(cpu + GICC_CTLR) | GICC_ENABLE_GRP0,
    );
}

/// GICD_SGIR for an ICC_SGI1R_EL1-format request: IRM (bit 40) is TargetListFilter 1,
/// every CPU interface but the sender's; otherwise the target list's bits 7:0 are the
/// CPUTargetList, vCPU n (Aff0 = n) being CPU interface n. A GICv2 has CPU interfaces 0-7 only:
/// targets it cannot name (target list bits 15:8, or any of Aff1, Aff2, Aff3 or the range
/// selector nonzero) are left out, and a request left with none is written with an empty list,
/// which sends nothing.
fn sgir(sgi1r: u64) -> u32 {
    const IRM: u64 = 1 << 40;
    const ELSEWHERE: u64 = 0xff << 16 | 0xff << 32 | 0xf << 44 | 0xff << 48;
    let intid = (sgi1r >> 24 & 0xf) as u32;
    if sgi1r & IRM != 0 {
        return 1 << 24 | intid;
    }
    let targets = if sgi1r & ELSEWHERE == 0 {
        sgi1r as u32 & 0xff
    } else {
        0
    };
    targets << 16 | intid
}

pub(super) fn send_sgi(distributor: u64, sgi1r: u64) {
    mmio_write32(distributor + GICD_SGIR, sgir(sgi1r));
}

/// Reads GICC_IAR: the whole value, which ending the interrupt writes back.
pub(super) fn acknowledge(cpu: u64) -> u32 {
    mmio_read32(cpu + GICC_IAR)
}

pub(super) fn intid(iar: u32) -> u32 {
    iar & INTID
}

/// Writes GICC_EOIR with what GICC_IAR returned.
pub(super) fn end(cpu: u64, iar: u32) {
    mmio_write32(cpu + GICC_EOIR, iar);
}

/// GICC_HPPIR's INTID.
pub(super) fn highest_pending(cpu: u64) -> u32 {
    intid(mmio_read32(cpu + GICC_HPPIR))
}

pub(super) fn split_priority_drop(cpu: u64) {
    mmio_write32(
        cpu + GICC_CTLR,
        mmio_read32(cpu + GICC_CTLR) | GICC_EOI_MODE,
    );
}
