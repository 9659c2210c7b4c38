//! A GICv3 (Arm IHI 0069, GICv3/v4 architecture): the distributor with affinity routing, one
//! redistributor per CPU found by its affinity, the CPU interface's system registers.
//!
//! All of the hypervisor's interrupts are Group 1 (IRQ); the stop request and the watchdog's
//! tick are Group 0, which with a single security state is signalled as FIQ (IHI 0069, 4.6.2).

use aarch64_cpu::registers::{ICC_SRE_EL2, MPIDR_EL1, ReadWriteable, Readable, Writeable};
use tandem_core::config::{Gic, GicCpu};
use tock_registers::registers::{ReadOnly, ReadWrite};
use tock_registers::{register_bitfields, register_structs};

use super::bank::{self, Bank};
use super::{GicError, KICK_SGI, PRIORITY, STOP_PRIORITY, STOP_SGI, TICK_PRIORITY, facts};
use crate::sysreg::{isb, read_sysreg, write_sysreg};

register_bitfields! {u32,
    /// IHI 0069, 12.9.4 (GICD_CTLR, non-secure view with a single security state).
    GICD_CTLR [
        ARE_NS OFFSET(4) NUMBITS(1) [],
        EnableGrp1A OFFSET(1) NUMBITS(1) [],
        /// With a single security state (GICD_CTLR.DS = 1, QEMU `virt` without EL3), Group 0
        /// belongs to the hypervisor (IHI 0069, 12.9.4).
        EnableGrp0 OFFSET(0) NUMBITS(1) []
    ],
    /// IHI 0069, 12.11.42.
    GICR_WAKER [
        ChildrenAsleep OFFSET(2) NUMBITS(1) [],
        ProcessorSleep OFFSET(1) NUMBITS(1) []
    ]
}

register_bitfields! {u64,
    /// IHI 0069, 12.11.37.
    GICR_TYPER [
        Affinity OFFSET(32) NUMBITS(32) [],
        Last OFFSET(4) NUMBITS(1) []
    ]
}

register_structs! {
    /// The distributor's registers the hypervisor uses (IHI 0069, 12.9).
    Distributor {
        (0x0000 => ctlr: ReadWrite<u32, GICD_CTLR::Register>),
        (0x0004 => @END),
    },
    /// One CPU's redistributor: the RD_base frame, then the SGI_base frame holding the banked
    /// SGI/PPI registers (IHI 0069, 12.10 and 12.11).
    Redistributor {
        (0x0000 => _ctlr_iidr),
        (0x0008 => typer: ReadOnly<u64, GICR_TYPER::Register>),
        (0x0010 => _statusr),
        (0x0014 => waker: ReadWrite<u32, GICR_WAKER::Register>),
        (0x0018 => _rd_rest),
        (0x1_0000 => sgi: Bank),
        (0x1_0420 => @END),
    }
}

fn distributor(gic: &Gic) -> &'static Distributor {
    // SAFETY: the board's distributor frame, mapped as Device memory by the boot map; the
    // hypervisor is its only user.
    unsafe { &*(gic.distributor.raw() as *const Distributor) }
}

fn redistributor_at(base: u64) -> &'static Redistributor {
    // SAFETY: `base` is a redistributor of the board's GIC (its first, plus whole strides until
    // GICR_TYPER.Last), mapped as Device memory by the boot map.
    unsafe { &*(base as *const Redistributor) }
}

pub fn init_distributor(gic: &Gic) -> Result<(), GicError> {
    distributor(gic)
        .ctlr
        .write(GICD_CTLR::ARE_NS::SET + GICD_CTLR::EnableGrp1A::SET);
    Ok(())
}

/// The redistributor whose GICR_TYPER affinity matches this CPU's MPIDR (IHI 0069, 12.11.37).
fn redistributor(gic: &Gic) -> Option<&'static Redistributor> {
    let mpidr = MPIDR_EL1.get();
    let affinity = (mpidr & 0xff_ffff) | ((mpidr >> 32) & 0xff) << 24;
    let GicCpu::V3 {
        redistributors,
        redistributor_stride,
    } = gic.cpu
    else {
        return None;
    };
    let mut base = redistributors.raw();
    loop {
        let rd = redistributor_at(base);
        if rd.typer.read(GICR_TYPER::Affinity) == affinity {
            return Some(rd);
        }
        if rd.typer.is_set(GICR_TYPER::Last) {
            return None;
        }
        base += redistributor_stride;
    }
}

/// Sets up this CPU's redistributor and CPU interface, and the virtual interface's controls.
pub fn init_cpu() -> Result<(), GicError> {
    let gic = facts();
    let rd = redistributor(gic).ok_or(GicError::NoRedistributor)?;
    rd.waker.modify(GICR_WAKER::ProcessorSleep::CLEAR);
    while rd.waker.is_set(GICR_WAKER::ChildrenAsleep) {
        core::hint::spin_loop();
    }
    rd.sgi.enable(
        &[
            KICK_SGI,
            gic.maintenance_intid,
            gic.hyp_timer_intid,
            gic.virtual_timer_intid,
        ],
        PRIORITY,
        Some(true),
    );
    // ICC_SRE_EL2: system-register interface (SRE) with IRQ/FIQ bypass disabled (DIB, DFB), and
    // lower ELs allowed to use ICC_SRE_EL1 (Enable) (IHI 0069, 12.2.7).
    ICC_SRE_EL2.write(
        ICC_SRE_EL2::SRE::SET
            + ICC_SRE_EL2::DFB::SET
            + ICC_SRE_EL2::DIB::SET
            + ICC_SRE_EL2::ENABLE::SET,
    );
    isb();
    // SAFETY: configures this CPU's interrupt interface, which the hypervisor owns. PMR 0xff lets
    // every priority through; ICC_CTLR_EL1.EOImode (bit 1) = 1; group 1 enabled.
    unsafe {
        write_sysreg!("icc_pmr_el1", 0xff);
        write_sysreg!("icc_ctlr_el1", 1 << 1);
        write_sysreg!("icc_igrpen1_el1", 1);
    }
    isb();
    Ok(())
}

/// Lets [`STOP_SGI`] reach this CPU as a FIQ: a Group 0 interrupt (GICR_IGROUPR0 bit clear) of
/// the highest priority, Group 0 enabled at the distributor and the CPU interface
/// (ICC_IGRPEN0_EL1, IHI 0069, 12.2.14). With a single security state Group 0 is signalled as
/// FIQ (IHI 0069, 4.6.2).
pub fn enable_stop() -> Result<(), GicError> {
    let gic = facts();
    distributor(gic).ctlr.modify(GICD_CTLR::EnableGrp0::SET);
    let rd = redistributor(gic).ok_or(GicError::NoRedistributor)?;
    rd.sgi.enable(&[STOP_SGI], STOP_PRIORITY, Some(false));
    // SAFETY: enables Group 0 at this CPU's interface, whose Group 0 interrupts are the stop
    // request and the watchdog's tick, both taken by the FIQ vector (`entry`).
    unsafe { write_sysreg!("icc_igrpen0_el1", 1) };
    isb();
    Ok(())
}

/// Lets the watchdog's tick, the EL1 physical timer's PPI, reach this CPU as a FIQ, as
/// [`enable_stop`] does the stop request (which also enables Group 0); returns its INTID. The
/// hypervisor can take that timer for itself: guests never reach it (CNTHCTL_EL2.EL1PCEN = 0
/// traps their accesses to a model, `physical_timer`, whose interrupt is virtual).
pub fn enable_tick() -> Result<u32, GicError> {
    let gic = facts();
    let rd = redistributor(gic).ok_or(GicError::NoRedistributor)?;
    rd.sgi
        .enable(&[gic.physical_timer_intid], TICK_PRIORITY, Some(false));
    Ok(gic.physical_timer_intid)
}

/// Sends [`STOP_SGI`] to CPU `cpu`: ICC_SGI0R_EL1, the Group 0 twin of ICC_SGI1R_EL1 (IHI 0069,
/// 12.2.21), encoded as [`send_kick`] does.
pub fn send_stop(cpu: usize) {
    // SAFETY: the DSB makes the recovery's state visible before the SGI can arrive; the SGI only
    // stops the hypervisor on `cpu` for the recovery.
    unsafe {
        core::arch::asm!("dsb ish", options(nostack));
        write_sysreg!("icc_sgi0r_el1", sgi_target(STOP_SGI, cpu));
    }
    isb();
}

/// Acknowledges this CPU's highest-priority Group 0 interrupt: ICC_IAR0_EL1.
pub fn acknowledge_group0() -> u32 {
    let intid: u64;
    // SAFETY: acknowledges an interrupt, which the caller ends.
    unsafe { core::arch::asm!("mrs {}, icc_iar0_el1", out(reg) intid, options(nomem, nostack)) };
    intid as u32
}

/// Ends Group 0 interrupt `intid`, which this CPU acknowledged: the priority drop
/// (ICC_EOIR0_EL1) and, EOImode being 1, the deactivation (ICC_DIR_EL1) (IHI 0069, 4.4 and
/// 12.2.8-12.2.10).
pub fn end_group0(intid: u32) {
    // SAFETY: ends an interrupt this CPU acknowledged and handled itself.
    unsafe {
        write_sysreg!("icc_eoir0_el1", u64::from(intid));
        write_sysreg!("icc_dir_el1", u64::from(intid));
    }
}

/// For a recovery (recovery.md 6.5): resets this CPU's interrupt interface as a cold boot leaves
/// it and drops what a stopped CPU left behind. The active priorities go (ICC_AP0Rn_EL1 and
/// ICC_AP1Rn_EL1 = 0, as many as ICC_CTLR_EL1.PRIbits implies, IHI 0069, 12.2.1-12.2.4), so an
/// interrupt acknowledged and never ended no longer masks the others; the binary points go to
/// their minimum; the hypervisor's own interrupts are deactivated (GICR_ICACTIVER0) and a stop
/// request still pending is dropped (GICR_ICPENDR0). The interrupts forwarded to the guest are
/// left to its vCPU (`El2Vcpu::resume`), whose list registers may still hold them.
pub fn reset_for_recovery() -> Result<(), GicError> {
    let gic = facts();
    // ICC_CTLR_EL1.PRIbits (bits 10:8) is the number of priority bits - 1: 5 bits need one
    // register of each, 6 two and 7 four; the others are UNDEFINED.
    let pribits = ((read_sysreg!("icc_ctlr_el1") >> 8) & 0x7) + 1;
    // SAFETY: this CPU's own interface, owned by the hypervisor; nothing of the run before the
    // recovery is being handled any more (its stack was abandoned).
    unsafe {
        write_sysreg!("icc_ap0r0_el1", 0);
        write_sysreg!("icc_ap1r0_el1", 0);
        if pribits >= 6 {
            write_sysreg!("icc_ap0r1_el1", 0);
            write_sysreg!("icc_ap1r1_el1", 0);
        }
        if pribits >= 7 {
            write_sysreg!("icc_ap0r2_el1", 0);
            write_sysreg!("icc_ap1r2_el1", 0);
            write_sysreg!("icc_ap0r3_el1", 0);
            write_sysreg!("icc_ap1r3_el1", 0);
        }
        write_sysreg!("icc_bpr0_el1", 0);
        write_sysreg!("icc_bpr1_el1", 0);
    }
    init_cpu()?;
    let rd = redistributor(gic).ok_or(GicError::NoRedistributor)?;
    rd.sgi.clear_pending(1 << STOP_SGI);
    let own = [
        KICK_SGI,
        STOP_SGI,
        gic.maintenance_intid,
        gic.hyp_timer_intid,
        gic.physical_timer_intid,
    ];
    rd.sgi.deactivate(bank::mask(&own));
    Ok(())
}

/// Whether SGI or PPI `intid` is active at this CPU's redistributor (GICR_ISACTIVER0).
pub fn private_active(intid: u32) -> bool {
    redistributor(facts()).is_some_and(|rd| rd.sgi.active(intid))
}

/// Deactivates SGI or PPI `intid` at this CPU's redistributor (GICR_ICACTIVER0), whoever
/// acknowledged it.
pub fn deactivate_private(intid: u32) {
    if let Some(rd) = redistributor(facts()) {
        rd.sgi.deactivate(1 << intid);
    }
}

/// Lets PPI `intid` reach this CPU, as [`init_cpu`] does the hypervisor's own (the PMU's overflow
/// interrupt, for a vCPU that uses the PMU).
pub fn enable_ppi(intid: u32) -> Result<(), GicError> {
    let rd = redistributor(facts()).ok_or(GicError::NoRedistributor)?;
    rd.sgi.enable(&[intid], PRIORITY, Some(true));
    Ok(())
}

/// Stops PPI `intid` from reaching this CPU (GICR_ICENABLER0, IHI 0069, 12.11.7).
pub fn disable_ppi(intid: u32) -> Result<(), GicError> {
    let rd = redistributor(facts()).ok_or(GicError::NoRedistributor)?;
    rd.sgi.disable(intid);
    Ok(())
}

/// Sends [`KICK_SGI`] to CPU `cpu`. ICC_SGI1R_EL1 (IHI 0069, 12.2.22): INTID in bits 27:24,
/// Aff3.Aff2.Aff1 = 0 and Aff0 = `cpu` (QEMU `virt` numbers CPUs in Aff0, as `start_cpu` assumes),
/// given as range selector RS (bits 47:44, Aff0 / 16) and TargetList bit Aff0 % 16.
pub fn send_kick(cpu: usize) {
    let value = sgi_target(KICK_SGI, cpu);
    // SAFETY: the DSB makes the caller's kick flag visible before the SGI can arrive; the SGI
    // only interrupts the hypervisor on `cpu`, which acknowledges it as a plain exit.
    unsafe {
        core::arch::asm!("dsb ish", options(nostack));
        write_sysreg!("icc_sgi1r_el1", value);
    }
    isb();
}

/// The ICC_SGI1R_EL1 / ICC_SGI0R_EL1 value sending SGI `intid` to CPU `cpu` ([`send_kick`]).
fn sgi_target(intid: u32, cpu: usize) -> u64 {
    let cpu = cpu as u64 & 0xff;
    u64::from(intid) << 24 | (cpu / 16) << 44 | 1 << (cpu % 16)
}

/// Drops this CPU's pending [`KICK_SGI`] (GICR_ICPENDR0, IHI 0069, 12.11.15).
pub fn clear_kick() {
    if let Some(rd) = redistributor(facts()) {
        rd.sgi.clear_pending(1 << KICK_SGI);
    }
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
