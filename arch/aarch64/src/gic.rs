//! The physical GICv3, owned by the hypervisor (Arm IHI 0069, GICv3/v4 architecture).
//!
//! The distributor is enabled with affinity routing; each CPU wakes its redistributor and enables
//! the private interrupts the hypervisor takes: the EL1 virtual timer (INTID 27), which it
//! forwards to the guest with a hardware list register, the EL2 physical timer (INTID 26) for
//! hypercall timer deadlines, and the virtual interface's maintenance interrupt (INTID 25).
//! EOImode = 1 splits priority drop (ICC_EOIR1_EL1) from deactivation (ICC_DIR_EL1), so a
//! forwarded interrupt stays active until the guest deactivates its virtual copy (IHI 0069, 4.4).

use crate::sysreg::{isb, read_sysreg, write_sysreg};

/// QEMU `virt` (`gic-version=3`) places the distributor and redistributors here.
pub const GICD_BASE: u64 = 0x0800_0000;
pub const GICR_BASE: u64 = 0x080a_0000;
/// Each redistributor: RD_base then SGI_base, 64 KiB each.
pub const GICR_STRIDE: u64 = 0x2_0000;
const SGI_BASE: u64 = 0x1_0000;

pub const INTID_MAINTENANCE: u32 = 25;
pub const INTID_HYP_TIMER: u32 = 26;
pub const INTID_VTIMER: u32 = 27;
/// INTIDs 1020-1023 are special: nothing to acknowledge (IHI 0069, 2.2.1).
pub const SPURIOUS: u32 = 1020;

const GICD_CTLR: u64 = 0x0;
const GICD_CTLR_ARE: u32 = 1 << 4;
const GICD_CTLR_ENABLE_GRP1: u32 = 1 << 1;
const GICR_TYPER: u64 = 0x8;
const GICR_TYPER_LAST: u64 = 1 << 4;
const GICR_WAKER: u64 = 0x14;
const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
const GICR_IGROUPR0: u64 = SGI_BASE + 0x80;
const GICR_ISENABLER0: u64 = SGI_BASE + 0x100;
const GICR_IPRIORITYR: u64 = SGI_BASE + 0x400;

fn read32(addr: u64) -> u32 {
    // SAFETY: `addr` lies in the GIC's register frames, mapped as Device memory by the boot map.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

fn write32(addr: u64, value: u32) {
    // SAFETY: as in `read32`.
    unsafe { core::ptr::write_volatile(addr as *mut u32, value) }
}

fn read64(addr: u64) -> u64 {
    // SAFETY: as in `read32`.
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}

/// Enables the distributor; once, on the bootstrap CPU.
pub fn init_distributor() {
    write32(GICD_BASE + GICD_CTLR, GICD_CTLR_ARE | GICD_CTLR_ENABLE_GRP1);
}

/// The redistributor whose GICR_TYPER affinity matches this CPU's MPIDR (IHI 0069, 9.11.35).
fn redistributor() -> Option<u64> {
    let mpidr = read_sysreg!("mpidr_el1");
    let affinity = (mpidr & 0xff_ffff) | ((mpidr >> 32) & 0xff) << 24;
    let mut frame = GICR_BASE;
    loop {
        let typer = read64(frame + GICR_TYPER);
        if typer >> 32 == affinity {
            return Some(frame);
        }
        if typer & GICR_TYPER_LAST != 0 {
            return None;
        }
        frame += GICR_STRIDE;
    }
}

/// Why this CPU's interrupt interface could not be set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub struct NoRedistributor;

/// Sets up this CPU's redistributor and CPU interface, and the virtual interface's controls.
pub fn init_cpu() -> Result<(), NoRedistributor> {
    let rd = redistributor().ok_or(NoRedistributor)?;
    write32(
        rd + GICR_WAKER,
        read32(rd + GICR_WAKER) & !WAKER_PROCESSOR_SLEEP,
    );
    while read32(rd + GICR_WAKER) & WAKER_CHILDREN_ASLEEP != 0 {
        core::hint::spin_loop();
    }
    let mine = [INTID_MAINTENANCE, INTID_HYP_TIMER, INTID_VTIMER];
    let mask = mine.iter().fold(0u32, |m, i| m | 1 << i);
    write32(rd + GICR_IGROUPR0, read32(rd + GICR_IGROUPR0) | mask);
    for intid in mine {
        let reg = rd + GICR_IPRIORITYR + u64::from(intid & !3);
        let shift = 8 * (intid & 3);
        write32(reg, (read32(reg) & !(0xff << shift)) | 0x80 << shift);
    }
    write32(rd + GICR_ISENABLER0, mask);
    // ICC_SRE_EL2: system-register interface (SRE) with IRQ/FIQ bypass disabled (DIB, DFB), and
    // lower ELs allowed to use ICC_SRE_EL1 (Enable) (IHI 0069, 12.2.7).
    // SAFETY: configures this CPU's interrupt interface, which the hypervisor owns.
    unsafe {
        write_sysreg!("icc_sre_el2", 0xf);
    }
    isb();
    // SAFETY: as above. PMR 0xff lets every priority through; EOImode = 1; group 1 enabled.
    unsafe {
        write_sysreg!("icc_pmr_el1", 0xff);
        write_sysreg!("icc_ctlr_el1", 1 << 1);
        write_sysreg!("icc_igrpen1_el1", 1);
    }
    isb();
    Ok(())
}

/// Acknowledges the highest-priority pending interrupt; [`SPURIOUS`] or above if none.
pub fn acknowledge() -> u32 {
    let intid: u64;
    // SAFETY: reading ICC_IAR1_EL1 acknowledges an interrupt, which the caller then handles.
    unsafe { core::arch::asm!("mrs {}, icc_iar1_el1", out(reg) intid, options(nomem, nostack)) };
    intid as u32
}

/// Priority drop only (EOImode = 1): the interrupt stays active until [`deactivate`].
pub fn end_of_interrupt(intid: u32) {
    // SAFETY: ends the priority of an interrupt this CPU acknowledged.
    unsafe { write_sysreg!("icc_eoir1_el1", intid) };
}

pub fn deactivate(intid: u32) {
    // SAFETY: deactivates an interrupt this CPU acknowledged and will not forward.
    unsafe { write_sysreg!("icc_dir_el1", intid) };
}
