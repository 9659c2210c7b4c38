//! A GICv2 with the virtualization extensions (Arm IHI 0048B): the distributor and the CPU
//! interface are memory-mapped, each CPU seeing its own bank of the SGI and PPI registers and of
//! the CPU interface at the one address (IHI 0048B, 4.1.1 and 4.3).
//!
//! Without the Security Extensions (QEMU `virt` without EL3, GICD_TYPER.SecurityExtn = 0) the
//! hypervisor owns both groups: its interrupts are Group 1, and the stop request and the
//! watchdog's tick are Group 0, signalled as FIQ (GICC_CTLR.FIQEn). GICC_IAR acknowledges both
//! (GICC_CTLR.AckCtl, IHI 0048B 4.4.1 and 3.8: QEMU 7.2 has no GICC_AIAR, the Group 1 alias), so
//! the IRQ path may find a Group 0 interrupt that became pending after the IRQ was signalled;
//! it hands it back to the FIQ ([`acknowledge`]). With them (a GIC-400 the firmware left to the
//! non-secure world, as on a Raspberry Pi 4) the hypervisor sees only Group 1, through GICC_IAR,
//! and has no FIQ: recovery, which needs one, is refused there ([`GicError::NoGroup0`]).

use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};

use tandem_core::config::{Gic, GicCpu};
use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

use super::bank::{self, Bank};
use super::{GicError, KICK_SGI, PRIORITY, SPURIOUS, STOP_PRIORITY, STOP_SGI, TICK_PRIORITY};
use crate::boot::MAX_CPUS;
use crate::sysreg;

register_structs! {
    /// The distributor registers the hypervisor uses (IHI 0048B, 4.1.2) besides the first word
    /// of each bank (INTIDs 0-31, the SGIs and PPIs), which each CPU sees as its own
    /// ([`Bank`]).
    Distributor {
        (0x000 => ctlr: ReadWrite<u32>),
        (0x004 => typer: ReadOnly<u32>),
        (0x008 => _iidr_and_banks),
        (0x800 => itargetsr0: ReadOnly<u32>),
        (0x804 => _itargetsr),
        (0xf00 => sgir: WriteOnly<u32>),
        (0xf04 => _sgir),
        (0xf10 => cpendsgir: [ReadWrite<u32>; 4]),
        (0xf20 => @END),
    },
    /// This CPU's interface (IHI 0048B, 4.1.3).
    CpuInterface {
        (0x0000 => ctlr: ReadWrite<u32>),
        (0x0004 => pmr: ReadWrite<u32>),
        (0x0008 => bpr: ReadWrite<u32>),
        (0x000c => iar: ReadOnly<u32>),
        (0x0010 => eoir: WriteOnly<u32>),
        (0x0014 => _rpr_hppir_abpr_aliases),
        (0x00d0 => apr: [ReadWrite<u32>; 4]),
        (0x00e0 => nsapr: [ReadWrite<u32>; 4]),
        (0x00f0 => _iidr),
        (0x1000 => dir: WriteOnly<u32>),
        (0x1004 => @END),
    }
}

/// GICD_TYPER.SecurityExtn (IHI 0048B, 4.3.2).
const TYPER_SECURITY_EXTN: u32 = 1 << 10;
/// GICD_CTLR without the Security Extensions: EnableGrp0, EnableGrp1 (4.3.1). In the
/// non-secure view of a GIC with them, bit 0 enables Group 1 and bit 1 is reserved.
const GICD_GRP0: u32 = 1 << 0;
const GICD_GRP1: u32 = 1 << 1;
/// GICC_CTLR (4.4.1, tables 4-31 and 4-32): EnableGrp0, EnableGrp1, FIQEn (Group 0 as FIQ),
/// EOImode (bit 9: EOImodeS without the Security Extensions, EOImodeNS in the non-secure view
/// of a GIC with them) splitting priority drop from deactivation, so a forwarded interrupt
/// stays active until the guest deactivates its virtual copy (5.2.3).
const GICC_GRP0: u32 = 1 << 0;
const GICC_GRP1: u32 = 1 << 1;
const GICC_ACK_CTL: u32 = 1 << 2;
const GICC_FIQ_EN: u32 = 1 << 3;
const GICC_EOI_MODE: u32 = 1 << 9;
/// GICD_SGIR (4.3.15): SGIINTID [3:0], NSATT (bit 15: send only if the SGI is Group 1),
/// CPUTargetList [23:16], TargetListFilter [25:24] = 0 (the list).
const SGIR_NSATT: u32 = 1 << 15;
const SGIR_TARGETS_SHIFT: u32 = 16;
/// GICC_IAR: the interrupt ID, bits 9:0 (4.4.4); the CPUID bits above matter only for SGIs
/// and are written back as read.
const IAR_ID: u32 = 0x3ff;

/// The distributor's and the CPU interface's addresses, and whether the GIC has the Security
/// Extensions, recorded once by [`init_distributor`], before `super` dispatches anything else
/// here.
static GICD: AtomicU64 = AtomicU64::new(0);
static GICC: AtomicU64 = AtomicU64::new(0);
static SECURE: AtomicBool = AtomicBool::new(false);
/// The source CPU bits (GICC_IAR 12:10) of the SGI each CPU acknowledged last: ending it needs
/// them back (4.4.5), callers know the SGI by its ID alone.
static SGI_SOURCE: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
/// Each CPU's interface number, the bit its GICD_ITARGETSR0 reads (4.3.12): what GICD_SGIR's
/// target list names, which need not be the CPU's index.
static INTERFACE: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(0) }; MAX_CPUS];

fn this() -> (&'static Distributor, &'static CpuInterface) {
    // SAFETY: the board's distributor and CPU interface frames, recorded by `init_distributor`
    // before anything else reaches this module, mapped as Device memory by the boot map; the
    // hypervisor is their only user (guests reach an emulated distributor and the virtual CPU
    // interface).
    unsafe {
        (
            &*(GICD.load(Ordering::Relaxed) as *const Distributor),
            &*(GICC.load(Ordering::Relaxed) as *const CpuInterface),
        )
    }
}

/// This CPU's SGI and PPI bank, at the start of the distributor.
fn bank() -> &'static Bank {
    // SAFETY: as in `this`: the distributor's frame, whose SGI and PPI registers `Bank` lays
    // out (they do not overlap the registers `Distributor` names).
    unsafe { &*(GICD.load(Ordering::Relaxed) as *const Bank) }
}

/// The group to make the hypervisor's Group 1 interrupts: left alone on a GIC with the
/// Security Extensions, where it cannot be changed from the non-secure side.
fn group1() -> Option<bool> {
    (!secure()).then_some(true)
}

fn secure() -> bool {
    SECURE.load(Ordering::Relaxed)
}

pub fn init_distributor(gic: &Gic) -> Result<(), GicError> {
    let GicCpu::V2 {
        cpu_interface,
        hyp_interface,
        ..
    } = gic.cpu
    else {
        return Err(GicError::NotDescribed);
    };
    GICD.store(gic.distributor.raw(), Ordering::Relaxed);
    GICC.store(cpu_interface.raw(), Ordering::Relaxed);
    crate::gich::use_frame(hyp_interface.raw());
    let (d, _) = this();
    let secure = d.typer.get() & TYPER_SECURITY_EXTN != 0;
    SECURE.store(secure, Ordering::Relaxed);
    d.ctlr.set(if secure {
        GICD_GRP0
    } else {
        GICD_GRP0 | GICD_GRP1
    });
    Ok(())
}

pub fn init_cpu() -> Result<(), GicError> {
    let (d, c) = this();
    // Byte 0 of the banked GICD_ITARGETSR0 is this CPU's own interface bit (4.3.12).
    INTERFACE[sysreg::cpu_index()].store(d.itargetsr0.get() as u8, Ordering::Relaxed);
    let gic = super::facts();
    bank().enable(
        &[
            KICK_SGI,
            gic.maintenance_intid,
            gic.hyp_timer_intid,
            gic.virtual_timer_intid,
        ],
        PRIORITY,
        group1(),
    );
    c.pmr.set(0xff);
    c.ctlr.set(if secure() {
        GICC_GRP0 | GICC_EOI_MODE
    } else {
        GICC_GRP1 | GICC_ACK_CTL | GICC_FIQ_EN | GICC_EOI_MODE | (c.ctlr.get() & GICC_GRP0)
    });
    Ok(())
}

/// Group 0 as FIQ: only without the Security Extensions.
fn enable_group0(intid: u32, priority: u32) -> Result<(), GicError> {
    if secure() {
        return Err(GicError::NoGroup0);
    }
    bank().enable(&[intid], priority, Some(false));
    Ok(())
}

pub fn enable_stop() -> Result<(), GicError> {
    let (_, c) = this();
    enable_group0(STOP_SGI, STOP_PRIORITY)?;
    c.ctlr.set(c.ctlr.get() | GICC_GRP0);
    Ok(())
}

pub fn enable_tick() -> Result<u32, GicError> {
    let intid = super::facts().physical_timer_intid;
    enable_group0(intid, TICK_PRIORITY)?;
    Ok(intid)
}

/// Sends SGI `intid` to CPU `cpu` through GICD_SGIR, `group1` saying which group it is (NSATT).
fn send(intid: u32, cpu: usize, group1: bool) {
    send_to(
        intid,
        u32::from(INTERFACE[cpu].load(Ordering::Relaxed)),
        group1,
    );
}

/// Sends SGI `intid` to the CPU interfaces in `target` (a GICD_SGIR target list).
fn send_to(intid: u32, target: u32, group1: bool) {
    let (d, _) = this();
    // SAFETY: the DSB makes the caller's state visible before the SGI can arrive.
    unsafe { core::arch::asm!("dsb ish", options(nostack)) };
    d.sgir
        .set(intid | target << SGIR_TARGETS_SHIFT | if group1 { SGIR_NSATT } else { 0 });
}

pub fn send_stop(cpu: usize) {
    send(STOP_SGI, cpu, false);
}

pub fn send_kick(cpu: usize) {
    send(KICK_SGI, cpu, true);
}

/// Acknowledges this CPU's highest-priority Group 0 interrupt (GICC_IAR), as the whole value
/// [`end_group0`] needs back; [`SPURIOUS`] or above (in its ID bits) if none.
pub fn acknowledge_group0() -> u32 {
    this().1.iar.get()
}

pub fn end_group0(iar: u32) {
    let (_, c) = this();
    c.eoir.set(iar);
    c.dir.set(iar);
}

/// Acknowledges the highest-priority pending Group 1 interrupt and returns its ID. A Group 0
/// interrupt found instead (it became pending, at a higher priority, after the IRQ was
/// signalled) is ended and made pending again for the FIQ it is: the stop request re-sent to
/// this CPU, the watchdog's tick left to its timer's level, which still holds; the IRQ path then
/// sees nothing to acknowledge.
pub fn acknowledge() -> u32 {
    let (d, c) = this();
    let iar = c.iar.get();
    let id = iar & IAR_ID;
    if !secure() && id < 32 && !bank().group1(id) {
        c.eoir.set(iar);
        c.dir.set(iar);
        if id == STOP_SGI {
            send_to(STOP_SGI, d.itargetsr0.get() & 0xff, false);
        }
        return SPURIOUS;
    }
    if id < 16 {
        SGI_SOURCE[sysreg::cpu_index()].store(iar & !IAR_ID, Ordering::Relaxed);
    }
    id
}

/// The GICC_EOIR / GICC_DIR value ending interrupt `id` on this CPU: an SGI's with the source
/// [`acknowledge`] read.
fn with_source(id: u32) -> u32 {
    if id < 16 {
        id | SGI_SOURCE[sysreg::cpu_index()].load(Ordering::Relaxed)
    } else {
        id
    }
}

pub fn end_of_interrupt(id: u32) {
    this().1.eoir.set(with_source(id));
}

pub fn deactivate(id: u32) {
    this().1.dir.set(with_source(id));
}

pub fn reset_for_recovery() -> Result<(), GicError> {
    let (d, c) = this();
    for apr in c.apr.iter().chain(c.nsapr.iter()) {
        apr.set(0);
    }
    c.bpr.set(0);
    init_cpu()?;
    clear_sgi(d, STOP_SGI);
    let gic = super::facts();
    let own = [
        KICK_SGI,
        STOP_SGI,
        gic.maintenance_intid,
        gic.hyp_timer_intid,
        gic.physical_timer_intid,
    ];
    bank().deactivate(bank::mask(&own));
    Ok(())
}

/// Drops SGI `intid` pending on this CPU from every source (GICD_CPENDSGIRn, a byte per SGI,
/// a bit per source CPU, 4.3.16).
fn clear_sgi(d: &Distributor, intid: u32) {
    d.cpendsgir[(intid / 4) as usize].set(0xff << (8 * (intid % 4)));
}

pub fn clear_kick() {
    clear_sgi(this().0, KICK_SGI);
}

pub fn private_active(intid: u32) -> bool {
    bank().active(intid)
}

pub fn deactivate_private(intid: u32) {
    bank().deactivate(1 << intid);
}

pub fn enable_ppi(intid: u32) -> Result<(), GicError> {
    bank().enable(&[intid], PRIORITY, group1());
    Ok(())
}

pub fn disable_ppi(intid: u32) -> Result<(), GicError> {
    bank().disable(intid);
    Ok(())
}
