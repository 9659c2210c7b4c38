//! The guest's side of the GIC, a GICv3 (Arm IHI 0069) or a GICv2 (Arm IHI 0048B) as the device
//! tree says (`crate::machine`): the distributor Tandem emulates; on a GICv3 the redistributors
//! it emulates and the CPU interface's system registers, which the hardware virtualizes; on a
//! GICv2 the virtual CPU interface the hypervisor maps where the CPU interface would be. SGIs
//! and PPIs (INTIDs 0-31) are each vCPU's own, in its redistributor's SGI frame on a GICv3 and
//! banked in the distributor on a GICv2, both laid out like the distributor; SPIs are in the
//! distributor. The GICv2 virtual CPU interface implements five priority bits: priorities here
//! keep their low three bits clear.

mod v2;
mod v3;

use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::cpu::{mmio_read32, mmio_write32};

pub const VTIMER: u32 = 27;
/// The EL1 physical timer's PPI (the device tree's second timer interrupt).
pub const PTIMER: u32 = 30;
/// The PMU's overflow interrupt (QEMU `virt`'s PPI 7), for a partition that uses the PMU.
pub const PMU: u32 = 23;
/// The shared peripheral interrupt the guests ask `TIMER_SET` to raise.
pub const HYPERCALL_TIMER: u32 = 48;
/// The INTID an acknowledge or a pending query returns when there is no interrupt.
pub const SPURIOUS: u32 = 1023;

// Registers of the distributor's layout (IHI 0069, 12.9; IHI 0048B, 4.3).
const ISENABLER: u64 = 0x100;
const ISPENDR: u64 = 0x200;
const ISACTIVER: u64 = 0x300;
const ICACTIVER: u64 = 0x380;
const IPRIORITYR: u64 = 0x400;

/// The GIC a device tree describes, with its frames' addresses.
pub(crate) enum Gic {
    /// vCPU n's redistributor is at `redistributors + n * stride`.
    V3 {
        distributor: u64,
        redistributors: u64,
        stride: u64,
    },
    V2 {
        distributor: u64,
        cpu_interface: u64,
    },
}

// QEMU `virt`'s GICv3 unless `configure` says otherwise.
static V2: AtomicBool = AtomicBool::new(false);
static DISTRIBUTOR: AtomicU64 = AtomicU64::new(0x0800_0000);
/// A GICv3's first redistributor, or a GICv2's CPU interface.
static CPU_FRAME: AtomicU64 = AtomicU64::new(0x080a_0000);
static STRIDE: AtomicU64 = AtomicU64::new(0x2_0000);

/// Records the GIC the device tree names (the boot vCPU, before any uses it).
pub(crate) fn configure(gic: Gic) {
    let (v2, distributor, cpu, stride) = match gic {
        Gic::V3 {
            distributor,
            redistributors,
            stride,
        } => (false, distributor, redistributors, stride),
        Gic::V2 {
            distributor,
            cpu_interface,
        } => (true, distributor, cpu_interface, 0),
    };
    V2.store(v2, Ordering::Relaxed);
    DISTRIBUTOR.store(distributor, Ordering::Relaxed);
    CPU_FRAME.store(cpu, Ordering::Relaxed);
    STRIDE.store(stride, Ordering::Relaxed);
}

fn is_v2() -> bool {
    V2.load(Ordering::Relaxed)
}

fn distributor() -> u64 {
    DISTRIBUTOR.load(Ordering::Relaxed)
}

fn cpu_frame() -> u64 {
    CPU_FRAME.load(Ordering::Relaxed)
}

/// The GIC's architecture version: 3 or 2.
pub fn version() -> u32 {
    if is_v2() { 2 } else { 3 }
}

/// This vCPU's index: Tandem gives vCPU n the affinity Aff0 = n, which is also its GICv2 CPU
/// interface number.
fn this_vcpu() -> u64 {
    let mpidr: u64;
    // SAFETY: reads this vCPU's MPIDR_EL1.
    unsafe { asm!("mrs {}, mpidr_el1", out(reg) mpidr, options(nomem, nostack)) };
    mpidr & 0xff
}

/// Where this vCPU's SGIs and PPIs are: its redistributor's SGI frame, or the distributor.
fn private_frame() -> u64 {
    if is_v2() {
        distributor()
    } else {
        v3::sgi_frame(cpu_frame(), STRIDE.load(Ordering::Relaxed), this_vcpu())
    }
}

/// Enables this vCPU's `ppi` at priority 0x80.
pub fn enable_ppi(ppi: u32) {
    enable_private(ppi, 0x80);
}

/// Enables this vCPU's SGI or PPI `intid` at `priority`: a vCPU reaches only its own (a GICv2
/// banks them per CPU; Tandem's GICv3 ignores writes to another vCPU's redistributor).
pub fn enable_private(intid: u32, priority: u8) {
    if !is_v2() {
        v3::wake(cpu_frame(), STRIDE.load(Ordering::Relaxed), this_vcpu());
    }
    enable(private_frame(), intid, priority);
}

/// Enables the shared peripheral interrupt `spi` at `priority`, delivered to this vCPU.
pub fn enable_spi(spi: u32, priority: u8) {
    if is_v2() {
        v2::target(distributor(), spi, this_vcpu());
    }
    enable(distributor(), spi, priority);
}

/// Sends the SGI `value` asks for, in ICC_SGI1R_EL1's format: INTID in bits 27:24, target list
/// in 15:0, Aff1 in 23:16, IRM in bit 40, RS in 47:44 (IHI 0069, 12.2.22).
pub fn send_sgi(value: u64) {
    if is_v2() {
        v2::send_sgi(distributor(), value);
    } else {
        v3::send_sgi(value);
    }
}

/// Makes the shared peripheral interrupts whose bits are set in `bits`, from `first` (a multiple
/// of 32), pending with one write.
pub fn set_pending(first: u32, bits: u32) {
    mmio_write32(distributor() + ISPENDR + u64::from(first / 32) * 4, bits);
}

/// Sets `intid`'s priority and enable bit in the frame at `base`, then turns on forwarding in
/// the distributor and the CPU interface, at every priority.
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
    if is_v2() {
        v2::forward(distributor(), cpu_frame());
    } else {
        v3::forward(distributor());
    }
}

/// An acknowledged interrupt: its INTID, and what ending it needs (a GICv2's acknowledge value
/// also names an SGI's sender, and its end of interrupt must write that value back).
pub struct Ack {
    pub intid: u32,
    raw: u32,
}

/// Acknowledges the highest-priority pending interrupt.
pub fn acknowledge() -> Ack {
    if is_v2() {
        let raw = v2::acknowledge(cpu_frame());
        Ack {
            intid: v2::intid(raw),
            raw,
        }
    } else {
        let raw = v3::acknowledge();
        Ack { intid: raw, raw }
    }
}

/// Ends an acknowledged interrupt: drops the running priority and, unless
/// [`split_priority_drop`] was called, deactivates it.
pub fn end(ack: Ack) {
    if is_v2() {
        v2::end(cpu_frame(), ack.raw);
    } else {
        v3::end(ack.raw);
    }
}

/// The highest-priority pending interrupt's INTID, without acknowledging it.
pub fn highest_pending() -> u32 {
    if is_v2() {
        v2::highest_pending(cpu_frame())
    } else {
        v3::highest_pending()
    }
}

/// EOImode 1: from now on [`end`] only drops priority, and deactivation is separate.
pub fn split_priority_drop() {
    if is_v2() {
        v2::split_priority_drop(cpu_frame());
    } else {
        v3::split_priority_drop();
    }
}

/// Whether this vCPU's SGI or PPI `intid` is active (ISACTIVER0 of [`private_frame`]).
pub fn private_active(intid: u32) -> bool {
    mmio_read32(private_frame() + ISACTIVER) & 1 << intid != 0
}

/// Deactivates this vCPU's SGI or PPI `intid` (ICACTIVER0 of [`private_frame`]).
pub fn deactivate_private(intid: u32) {
    mmio_write32(private_frame() + ICACTIVER, 1 << intid);
}
