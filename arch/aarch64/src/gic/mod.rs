//! The physical GIC, owned by the hypervisor, where the board's configuration says it is: a
//! GICv3 (`v3`) or a GICv2 with the virtualization extensions (`v2`), one contract for both.
//!
//! Each CPU enables the private interrupts the hypervisor takes: the EL1 virtual timer, which it
//! forwards to the guest with a hardware list register, the EL2 physical timer for hypercall
//! timer deadlines, and the virtual interface's maintenance interrupt (their INTIDs are board
//! data too); a CPU whose vCPU uses the PMU also takes the PMU's overflow interrupt, forwarded
//! the same way. EOImode = 1 splits priority drop from deactivation, so a forwarded interrupt
//! stays active until the guest deactivates its virtual copy (IHI 0069, 4.4; IHI 0048B, 5.2.3).
//! All of these are Group 1 (IRQ). With recovery on, one Group 0 SGI (FIQ) stops CPUs for a
//! recovery (`stop`), the EL1 physical timer's PPI, Group 0 too, is the watchdog's tick
//! (`watchdog`), and a recovery resets each CPU's interface ([`reset_for_recovery`]).

mod bank;
mod v2;
mod v3;

use spin::Once;
use tandem_core::config::{Gic, GicCpu};

/// INTIDs 1020-1023 are special: nothing to acknowledge (IHI 0069, 2.2.1; IHI 0048B, 3.2.5).
pub const SPURIOUS: u32 = 1020;
/// The SGI one CPU sends another to bring it out of its guest or its idle wait (`kick`); any
/// SGI would do, the physical GIC is the hypervisor's alone.
pub const KICK_SGI: u32 = 1;
/// The Group 0 SGI a recovery stops the other CPUs with (`stop`): signalled as FIQ.
pub const STOP_SGI: u32 = 2;
/// The priority of the hypervisor's own interrupts: the middle of the range, below none of the
/// guest's (they are virtual and never compete at the physical interface).
const PRIORITY: u32 = 0x80;
/// The stop request's priority: the highest, so it preempts whatever the CPU interface has
/// active (IHI 0069, 4.8).
const STOP_PRIORITY: u32 = 0x00;
/// The watchdog's tick (`watchdog`): above the hypervisor's Group 1 interrupts, so one of them
/// acknowledged and not yet ended does not hold the tick back (an interrupt is signalled only
/// above the running priority, IHI 0069, 4.8), and below the stop request, which the
/// acknowledge then returns first when both are pending.
const TICK_PRIORITY: u32 = 0x40;

/// The board's GIC, recorded by [`init_distributor`] for every CPU.
static FACTS: Once<Gic> = Once::new();

/// The board's GIC facts; waits for the bootstrap CPU's [`init_distributor`].
pub fn facts() -> &'static Gic {
    FACTS.wait()
}

/// Why the interrupt controller could not be set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum GicError {
    /// The configuration names no GIC (validation refuses that for aarch64 boards).
    NotDescribed,
    /// No redistributor's affinity matches this CPU.
    NoRedistributor,
    /// The GICv2 has the Security Extensions and the firmware kept Group 0, and so FIQs, for
    /// the secure world: no stop request or watchdog tick can reach a CPU.
    NoGroup0,
}

/// Calls the version's own `$f`.
macro_rules! either {
    ($f:ident($($arg:expr),*)) => {
        match facts().cpu {
            GicCpu::V3 { .. } => v3::$f($($arg),*),
            GicCpu::V2 { .. } => v2::$f($($arg),*),
        }
    };
}

/// Records the board's GIC and enables its distributor; once, on the bootstrap CPU.
pub fn init_distributor(gic: Option<Gic>) -> Result<(), GicError> {
    let gic = gic.ok_or(GicError::NotDescribed)?;
    let gic = FACTS.call_once(|| gic);
    either!(init_distributor(gic))
}

/// Sets up this CPU's interface (and a GICv3's redistributor) for the hypervisor's interrupts.
pub fn init_cpu() -> Result<(), GicError> {
    either!(init_cpu())
}

/// Lets [`STOP_SGI`] reach this CPU as a FIQ: a Group 0 interrupt of the highest priority,
/// Group 0 enabled.
pub fn enable_stop() -> Result<(), GicError> {
    either!(enable_stop())
}

/// Lets the watchdog's tick, the EL1 physical timer's PPI, reach this CPU as a FIQ, as
/// [`enable_stop`] does the stop request (which also enables Group 0); returns its INTID. The
/// hypervisor can take that timer for itself: guests never reach it (CNTHCTL_EL2.EL1PCEN = 0
/// traps their accesses to a model, `physical_timer`, whose interrupt is virtual).
pub fn enable_tick() -> Result<u32, GicError> {
    either!(enable_tick())
}

/// Sends [`STOP_SGI`] to CPU `cpu`.
pub fn send_stop(cpu: usize) {
    either!(send_stop(cpu))
}

/// Acknowledges this CPU's highest-priority Group 0 interrupt, as the value [`end_group0`]
/// takes back; [`SPURIOUS`] or above in its low 10 bits if none.
pub fn acknowledge_group0() -> u32 {
    either!(acknowledge_group0())
}

/// Ends Group 0 interrupt `iar` ([`acknowledge_group0`]'s value): the priority drop and,
/// EOImode being 1, the deactivation.
pub fn end_group0(iar: u32) {
    either!(end_group0(iar))
}

/// The interrupt ID in an acknowledge's value (its low 10 bits; above them a GICv2 SGI's source
/// CPU, IHI 0048B 4.4.4).
pub fn id(iar: u32) -> u32 {
    iar & 0x3ff
}

/// Acknowledges and ends the Group 0 interrupt this CPU takes as a FIQ ([`STOP_SGI`], or a
/// watchdog tick pending before it, whose timer level brings it back once FIQs are let in).
pub fn take_stop() {
    let iar = acknowledge_group0();
    if id(iar) < SPURIOUS {
        end_group0(iar);
    }
}

/// For a recovery (recovery.md 6.5): resets this CPU's interrupt interface as a cold boot leaves
/// it and drops what a stopped CPU left behind: no active priorities, so an interrupt
/// acknowledged and never ended no longer masks the others; the binary points at their minimum;
/// the hypervisor's own interrupts deactivated and a stop request still pending dropped. The
/// interrupts forwarded to the guest are left to its vCPU (`El2Vcpu::resume`), whose list
/// registers may still hold them.
pub fn reset_for_recovery() -> Result<(), GicError> {
    either!(reset_for_recovery())
}

/// Whether SGI or PPI `intid` is active on this CPU.
pub fn private_active(intid: u32) -> bool {
    either!(private_active(intid))
}

/// Deactivates SGI or PPI `intid` on this CPU, whoever acknowledged it.
pub fn deactivate_private(intid: u32) {
    either!(deactivate_private(intid))
}

/// Lets PPI `intid` reach this CPU, as [`init_cpu`] does the hypervisor's own (the PMU's overflow
/// interrupt, for a vCPU that uses the PMU).
pub fn enable_ppi(intid: u32) -> Result<(), GicError> {
    either!(enable_ppi(intid))
}

/// Stops PPI `intid` from reaching this CPU.
pub fn disable_ppi(intid: u32) -> Result<(), GicError> {
    either!(disable_ppi(intid))
}

/// Sends [`KICK_SGI`] to CPU `cpu`.
pub fn send_kick(cpu: usize) {
    either!(send_kick(cpu))
}

/// Drops this CPU's pending [`KICK_SGI`].
pub fn clear_kick() {
    either!(clear_kick())
}

/// Acknowledges the highest-priority pending Group 1 interrupt; [`SPURIOUS`] or above if none.
pub fn acknowledge() -> u32 {
    either!(acknowledge())
}

/// Priority drop only (EOImode = 1): the interrupt stays active until [`deactivate`].
pub fn end_of_interrupt(intid: u32) {
    either!(end_of_interrupt(intid))
}

/// Deactivates an interrupt this CPU acknowledged and will not forward.
pub fn deactivate(intid: u32) {
    either!(deactivate(intid))
}
