//! The partition's view of the GICv3: an emulated distributor and redistributors (MMIO traps at
//! the addresses the guest's device tree names) over a [`VirtualInterrupts`] model, and the
//! hardware virtual CPU interface, whose list registers receive pending interrupts in priority
//! order before each entry (Arm IHI 0069, chapter 6 and 12.4).
//!
//! When more interrupts are pending than list registers are free, the rest wait in the model and
//! the underflow maintenance interrupt (ICH_HCR_EL2.UIE) brings the CPU back to EL2 as soon as
//! the guest has consumed all but one, to refill them.

use tandem_core::devices::vintc::VirtualInterrupts;

use crate::gic::{GICD_BASE, GICR_BASE, GICR_STRIDE};
use crate::lr;
use crate::sysreg::{read_sysreg, write_sysreg};

/// The guest-physical windows of the emulated distributor and redistributors: the same addresses
/// as QEMU `virt`'s, so the guest's device tree looks like the machine's.
pub const GUEST_GICD: u64 = GICD_BASE;
pub const GICD_SIZE: u64 = 0x1_0000;
pub const GUEST_GICR: u64 = GICR_BASE;

/// ICH_HCR_EL2: En (bit 0) and UIE (bit 1).
const HCR_EN: u64 = 1;
const HCR_UIE: u64 = 1 << 1;

const CTLR: u64 = 0x0000;
const TYPER: u64 = 0x0004;
const IIDR: u64 = 0x0008;
const IGROUPR: u64 = 0x0080;
const ISENABLER: u64 = 0x0100;
const ICENABLER: u64 = 0x0180;
const ISPENDR: u64 = 0x0200;
const ICPENDR: u64 = 0x0280;
const IPRIORITYR: u64 = 0x0400;
const IPRIORITYR_END: u64 = 0x0800;
const PIDR2: u64 = 0xffe8;
const GICR_TYPER: u64 = 0x0008;
const GICR_WAKER: u64 = 0x0014;
const SGI_FRAME: u64 = 0x1_0000;

/// GICD_CTLR: ARE_NS reads as one (affinity routing is always on), EnableGrp1A is stored.
const CTLR_ARE: u32 = 1 << 4;
const CTLR_GRP1: u32 = 1 << 1;
/// GICD_TYPER: ITLinesNumber = 7 (256 INTIDs), IDbits = 9 (10-bit IDs).
const TYPER_VALUE: u32 = 7 | 9 << 19;
/// Arm as implementer.
const IIDR_VALUE: u32 = 0x43b;
/// ArchRev = 3: GICv3.
const PIDR2_VALUE: u32 = 0x30;
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;

/// The distributor and redistributor registers a vCPU keeps besides its interrupt model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct VgicState {
    pub interrupts: VirtualInterrupts,
    gicd_ctlr: u32,
    waker: u32,
}

impl VgicState {
    pub const fn new() -> Self {
        Self {
            interrupts: VirtualInterrupts::new(),
            gicd_ctlr: 0,
            waker: WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP,
        }
    }
}

/// Which emulated GIC frame a guest-physical address falls in.
pub enum Frame {
    Distributor(u64),
    Redistributor { vcpu: u64, offset: u64 },
}

/// Classifies `gpa` for a partition with `vcpus` vCPUs.
pub fn frame(gpa: u64, vcpus: u64) -> Option<Frame> {
    if let Some(offset) = gpa.checked_sub(GUEST_GICD).filter(|&o| o < GICD_SIZE) {
        return Some(Frame::Distributor(offset));
    }
    let off = gpa.checked_sub(GUEST_GICR)?;
    let vcpu = off / GICR_STRIDE;
    (vcpu < vcpus).then_some(Frame::Redistributor {
        vcpu,
        offset: off % GICR_STRIDE,
    })
}

const BANKS_END: u64 = 0x0300;

/// The first INTID the register at `off` covers: one bit per interrupt in the banks from IGROUPR
/// to ICPENDR, one byte per interrupt in IPRIORITYR.
fn first_of(off: u64) -> Option<u32> {
    let word = off & !3;
    let bank = |base: u64| ((word - base) * 8) as u32;
    match word {
        IGROUPR..ISENABLER => Some(bank(IGROUPR)),
        ISENABLER..ICENABLER => Some(bank(ISENABLER)),
        ICENABLER..ISPENDR => Some(bank(ICENABLER)),
        ISPENDR..ICPENDR => Some(bank(ISPENDR)),
        ICPENDR..BANKS_END => Some(bank(ICPENDR)),
        IPRIORITYR..IPRIORITYR_END => Some((word - IPRIORITYR) as u32),
        _ => None,
    }
}

impl VgicState {
    /// Reads an emulated register of vCPU `me` among `vcpus`.
    pub fn read(&self, frame: &Frame, me: u64, vcpus: u64) -> u64 {
        match *frame {
            Frame::Distributor(off) => u64::from(self.dist_read(off)),
            Frame::Redistributor { vcpu, offset } => match offset {
                // Affinity = vCPU index; Processor_Number; Last on the final redistributor.
                GICR_TYPER => vcpu << 32 | vcpu << 8 | u64::from(vcpu + 1 == vcpus) << 4,
                GICR_WAKER if vcpu == me => self.waker.into(),
                PIDR2 => PIDR2_VALUE.into(),
                o if vcpu == me && o >= SGI_FRAME => u64::from(self.private_read(o - SGI_FRAME)),
                _ => 0,
            },
        }
    }

    /// Writes an emulated register of vCPU `me`; other vCPUs' redistributors ignore writes.
    pub fn write(&mut self, frame: &Frame, me: u64, value: u64) {
        let value = value as u32;
        match *frame {
            Frame::Distributor(off) => self.dist_write(off, value),
            Frame::Redistributor { vcpu, offset } if vcpu == me => match offset {
                GICR_WAKER => {
                    let sleep = value & WAKER_PROCESSOR_SLEEP;
                    self.waker = sleep | if sleep != 0 { WAKER_CHILDREN_ASLEEP } else { 0 };
                }
                o if o >= SGI_FRAME => self.bits_write(o - SGI_FRAME, value, 0..32),
                _ => {}
            },
            Frame::Redistributor { .. } => {}
        }
    }

    fn dist_read(&self, off: u64) -> u32 {
        match off {
            CTLR => self.gicd_ctlr | CTLR_ARE,
            TYPER => TYPER_VALUE,
            IIDR => IIDR_VALUE,
            PIDR2 => PIDR2_VALUE,
            // SGIs and PPIs live in the redistributors (affinity routing): RAZ/WI here.
            _ if first_of(off).is_some_and(|first| first < 32) => 0,
            _ => self.bits_read(off),
        }
    }

    fn dist_write(&mut self, off: u64, value: u32) {
        match off {
            CTLR => self.gicd_ctlr = value & CTLR_GRP1,
            _ => self.bits_write(off, value, 32..1020),
        }
    }

    /// The SGI/PPI registers of a redistributor's SGI frame: the distributor's layout, first
    /// register of each bank only.
    fn private_read(&self, off: u64) -> u32 {
        match first_of(off) {
            Some(first) if first < 32 => self.bits_read(off),
            _ => 0,
        }
    }

    fn bits_read(&self, off: u64) -> u32 {
        let v = &self.interrupts;
        let Some(first) = first_of(off) else { return 0 };
        match off {
            // Every interrupt is Group 1 (non-secure); the guest cannot change it.
            IGROUPR..ISENABLER => u32::MAX,
            ISENABLER..ISPENDR => v.enabled_word(first),
            ISPENDR..BANKS_END => v.pending_word(first),
            _ => (0..4).fold(0, |acc, i| {
                acc | u32::from(v.priority(first + i)) << (8 * i)
            }),
        }
    }

    /// Applies a write to a set/clear-enable, set/clear-pending or priority register, for
    /// interrupts in `intids` (the distributor does not own SGIs and PPIs, a redistributor owns
    /// nothing else).
    fn bits_write(&mut self, off: u64, value: u32, intids: core::ops::Range<u32>) {
        let Some(first) = first_of(off) else { return };
        let v = &mut self.interrupts;
        let bits = (0..32u32)
            .filter(|i| value & (1 << i) != 0)
            .map(|i| first + i);
        let mine = |i: &u32| intids.contains(i);
        match off {
            IGROUPR..ISENABLER => {}
            ISENABLER..ICENABLER => bits.filter(mine).for_each(|i| v.set_enabled(i, true)),
            ICENABLER..ISPENDR => bits.filter(mine).for_each(|i| v.set_enabled(i, false)),
            ISPENDR..ICPENDR => bits.filter(mine).for_each(|i| v.raise(i, false)),
            ICPENDR..BANKS_END => bits.filter(mine).for_each(|i| v.clear_pending(i)),
            _ => (0..4)
                .filter(|i| intids.contains(&(first + i)))
                .for_each(|i| v.set_priority(first + i, (value >> (8 * i)) as u8)),
        }
    }

    /// Moves pending interrupts into free list registers, highest priority first, and asks for
    /// an underflow maintenance interrupt if some must wait.
    pub fn flush(&mut self, lrs: usize) {
        let in_lr = |intid: u32| {
            (0..lrs).any(|n| {
                let v = lr::read(n);
                v & lr::STATE_MASK != 0 && v & lr::VINTID_MASK == u64::from(intid)
            })
        };
        for n in 0..lrs {
            if lr::read(n) & lr::STATE_MASK != 0 {
                continue;
            }
            let Some(d) = self.interrupts.take_next(in_lr) else {
                break;
            };
            let intid = u64::from(d.intid);
            let hw = if d.hardware {
                lr::HW | intid << lr::PINTID_SHIFT
            } else {
                0
            };
            lr::write(
                n,
                lr::STATE_PENDING
                    | lr::GROUP1
                    | hw
                    | u64::from(d.priority) << lr::PRIORITY_SHIFT
                    | intid,
            );
        }
        let hcr = if self.interrupts.deliverable() {
            HCR_EN | HCR_UIE
        } else {
            HCR_EN
        };
        // SAFETY: the virtual interface's controls for the vCPU this CPU runs.
        unsafe { write_sysreg!("ich_hcr_el2", hcr) };
    }

    /// Turns the underflow maintenance interrupt off until the next [`VgicState::flush`]. It is
    /// level-sensitive and stays asserted while UIE is set and at most one list register is
    /// valid (GICv3 architecture specification, ICH_HCR_EL2.UIE), so EL2 must clear UIE when it
    /// takes it, or it is taken again at once, forever.
    pub fn quiesce_underflow() {
        // SAFETY: the virtual interface's controls for the vCPU this CPU runs; the next flush
        // sets UIE again if interrupts still wait for a free list register.
        unsafe { write_sysreg!("ich_hcr_el2", HCR_EN) };
    }

    /// Whether a virtual interrupt waits for the guest, in a list register or in the model.
    pub fn pending(&self, lrs: usize) -> bool {
        self.interrupts.deliverable()
            || (0..lrs).any(|n| lr::read(n) & lr::STATE_MASK == lr::STATE_PENDING)
    }
}

/// Whether the guest has enabled Group 1 virtual interrupts (ICH_VMCR_EL2.VENG1).
pub fn group1_enabled() -> bool {
    read_sysreg!("ich_vmcr_el2") & (1 << 1) != 0
}

/// Empties the list registers, returning the physical INTIDs they were forwarding.
pub fn clear_list_registers(lrs: usize, mut hardware: impl FnMut(u32)) {
    for n in 0..lrs {
        let v = lr::read(n);
        if v & lr::STATE_MASK != 0 && v & lr::HW != 0 {
            hardware(((v >> lr::PINTID_SHIFT) & 0x3ff) as u32);
        }
        lr::write(n, 0);
    }
}
