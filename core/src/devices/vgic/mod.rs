//! A partition's view of a GICv3 (Arm IHI 0069): an emulated distributor and one redistributor per
//! vCPU, reached through MMIO exits at the windows the board names, over the vCPU's
//! [`VirtualInterrupts`]; or of a GICv2 (IHI 0048B, `v2`): an emulated distributor, whose SGI and
//! PPI registers each vCPU sees banked. The backend moves pending interrupts from that model into
//! its virtual CPU interface (list registers); everything register-level lives here, portable and
//! host-tested.
//!
//! On a GICv3 every interrupt is Group 1 (non-secure) and affinity routing is always on, so SGIs
//! and PPIs live in the redistributors and the distributor only owns SPIs (IHI 0069, 2.2 and
//! 12.9).
//!
//! Handling an access is split in two, as the exit loop's commit rule asks: [`VirtualGic::read`]
//! and [`VirtualGic::write`] only compute (a value, or a [`GicWrite`]); [`VirtualGic::apply`]
//! changes the model, last, together with the completion of the guest's instruction.

mod v2;

use super::sgi::SgiRequest;
use super::vintc::VirtualInterrupts;

/// The distributor's register frame; a redistributor is two of them (RD_base, then SGI_base).
pub const DISTRIBUTOR_SIZE: u64 = 0x1_0000;
const SGI_FRAME: u64 = 0x1_0000;
/// A GICv2's distributor, virtual interface control and CPU interface pages (IHI 0048B, 4.1.1).
pub const V2_FRAME: u64 = 0x1000;
/// A GICv2 CPU interface, and so the virtual CPU interface mapped for a guest in its place: two
/// pages, the second holding GICC_DIR (IHI 0048B, 4.4).
pub const V2_CPU_INTERFACE_SIZE: u64 = 0x2000;

// Distributor registers (IHI 0069, 12.9); the redistributor's SGI_base frame repeats the
// IGROUPR..IPRIORITYR banks for INTIDs 0..32 at the same offsets (12.11).
const CTLR: u64 = 0x0000;
const TYPER: u64 = 0x0004;
const IIDR: u64 = 0x0008;
const IGROUPR: u64 = 0x0080;
const ISENABLER: u64 = 0x0100;
const ICENABLER: u64 = 0x0180;
const ISPENDR: u64 = 0x0200;
const ICPENDR: u64 = 0x0280;
const BANKS_END: u64 = 0x0300;
// Active state, emulated for SGIs and PPIs only (in the SGI_base frame): the hardware holds it,
// in the list registers (IHI 0069, 12.11.3 and 12.11.4).
const ISACTIVER: u64 = 0x0300;
const ICACTIVER: u64 = 0x0380;
const IPRIORITYR: u64 = 0x0400;
const IPRIORITYR_END: u64 = 0x0800;
const PIDR2: u64 = 0xffe8;
// Redistributor RD_base registers (IHI 0069, 12.10).
const GICR_TYPER: u64 = 0x0008;
const GICR_WAKER: u64 = 0x0014;

/// GICD_CTLR: ARE_NS reads as one (affinity routing is always on), EnableGrp1A is stored.
const CTLR_ARE: u32 = 1 << 4;
const CTLR_GRP1: u32 = 1 << 1;
/// GICD_TYPER: ITLinesNumber = 7 (256 INTIDs), IDbits = 9 (10-bit IDs).
const TYPER_VALUE: u32 = 7 | 9 << 19;
/// Arm as implementer.
const IIDR_VALUE: u32 = 0x43b;
/// ArchRev = 3: GICv3.
const PIDR2_VALUE: u32 = 0x30;
const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;

/// Where a partition sees its emulated GIC, in guest-physical space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct GicWindows {
    pub distributor: u64,
    /// vCPU n's redistributor is at `redistributors + n * stride`; both 0 on a GICv2, whose CPU
    /// interface the guest reaches without a trap.
    pub redistributors: u64,
    pub stride: u64,
    /// The GIC's architecture version, 2 or 3.
    pub version: u64,
}

impl GicWindows {
    /// A GICv3's distributor and redistributors.
    pub const fn v3(distributor: u64, redistributors: u64, stride: u64) -> Self {
        Self {
            distributor,
            redistributors,
            stride,
            version: 3,
        }
    }

    /// A GICv2's distributor.
    pub const fn v2(distributor: u64) -> Self {
        Self {
            distributor,
            redistributors: 0,
            stride: 0,
            version: 2,
        }
    }

    fn is_v2(&self) -> bool {
        self.version == 2
    }
}

/// The emulated distributor and redistributor registers of one vCPU, and its interrupt model:
/// plain data, so it can live in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct VirtualGic {
    pub interrupts: VirtualInterrupts,
    windows: GicWindows,
    /// This vCPU's index among the partition's `vcpus`.
    vcpu: u64,
    vcpus: u64,
    gicd_ctlr: u32,
    waker: u32,
    /// SGIs and PPIs active: what the list registers said at the last [`VirtualGic::set_active`],
    /// with the guest's writes since.
    active: u32,
    /// Activations and deactivations the guest asked for, for the backend to make in its list
    /// registers ([`VirtualGic::take_active_changes`]).
    activate: u32,
    deactivate: u32,
}

/// Which emulated register an access falls in: its frame, and the offset of the aligned word
/// (32-bit, or 64-bit for GICR_TYPER) holding the accessed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Register {
    Distributor(u64),
    Redistributor { vcpu: u64, offset: u64 },
}

/// A decoded access: the register and where the accessed bytes start in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GicAccess {
    register: Register,
    shift: u32,
}

/// A register write the guest made, to be applied at the exit's commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GicWrite {
    register: Register,
    /// The whole register's new value, sub-word writes already merged.
    value: u32,
}

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

fn size_mask(size: u8) -> u64 {
    u64::MAX >> (64 - 8 * u32::from(size.clamp(1, 8)))
}

impl VirtualGic {
    /// The power-on state of vCPU `vcpu` of `vcpus`: nothing pending or enabled, its
    /// redistributor asleep.
    pub fn new(windows: GicWindows, vcpu: u64, vcpus: u64) -> Self {
        let mut interrupts = VirtualInterrupts::new();
        if windows.is_v2() {
            v2::enable_sgis(&mut interrupts);
        }
        Self {
            interrupts,
            windows,
            vcpu,
            vcpus,
            gicd_ctlr: 0,
            waker: WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP,
            active: 0,
            activate: 0,
            deactivate: 0,
        }
    }

    /// The SGIs and PPIs active in the backend's list registers (bit n = INTID n), before a
    /// register access is emulated; changes the guest asked for and the backend has not made
    /// yet stay visible.
    pub fn set_active(&mut self, active: u32) {
        self.active = (active | self.activate) & !self.deactivate;
    }

    /// The activations and deactivations of SGIs and PPIs the guest wrote (GICR_ISACTIVER0,
    /// GICR_ICACTIVER0) since the last call: (activate, deactivate).
    pub fn take_active_changes(&mut self) -> (u32, u32) {
        (
            core::mem::take(&mut self.activate),
            core::mem::take(&mut self.deactivate),
        )
    }

    /// The register `gpa` falls in, if it is one of the partition's GIC windows.
    pub fn decode(&self, gpa: u64) -> Option<GicAccess> {
        let w = &self.windows;
        let distributor_size = if w.is_v2() {
            V2_FRAME
        } else {
            DISTRIBUTOR_SIZE
        };
        let (register, offset, word) = match gpa.checked_sub(w.distributor) {
            Some(off) if off < distributor_size => (Register::Distributor(off & !3), off, off & !3),
            _ if w.is_v2() => return None,
            _ => {
                let off = gpa.checked_sub(w.redistributors)?;
                let vcpu = off.checked_div(w.stride)?;
                if vcpu >= self.vcpus {
                    return None;
                }
                let offset = off % w.stride;
                // GICR_TYPER is the one 64-bit register.
                let word = if offset & !7 == GICR_TYPER {
                    offset & !7
                } else {
                    offset & !3
                };
                (Register::Redistributor { vcpu, offset: word }, offset, word)
            }
        };
        Some(GicAccess {
            register,
            shift: 8 * (offset - word) as u32,
        })
    }

    /// What a read of `size` bytes at `access` returns.
    pub fn read(&self, access: GicAccess, size: u8) -> u64 {
        (self.register_value(access.register) >> access.shift) & size_mask(size)
    }

    /// The effect of writing `value` (`size` bytes) at `access`: bytes the guest did not write
    /// keep their value.
    pub fn write(&self, access: GicAccess, size: u8, value: u64) -> GicWrite {
        let value = if size >= 4 {
            value
        } else {
            let old = self.register_value(access.register);
            let mask = size_mask(size) << access.shift;
            (old & !mask) | ((value << access.shift) & mask)
        };
        GicWrite {
            register: access.register,
            value: value as u32,
        }
    }

    /// The SGIs a write of `value` at `access` sends, if it is one: a GICv2's GICD_SGIR (on a
    /// GICv3 SGIs are sent through a system register, `SgiRequest::from_sgi1r`).
    pub fn sgi_request(&self, access: GicAccess, value: u64) -> Option<SgiRequest> {
        (self.windows.is_v2() && access.register == Register::Distributor(v2::SGIR))
            .then(|| SgiRequest::from_sgir(value as u32, self.vcpu, self.vcpus))
    }

    /// Applies a write computed by [`VirtualGic::write`]; other vCPUs' redistributors ignore it.
    pub fn apply(&mut self, write: GicWrite) {
        let value = write.value;
        if self.windows.is_v2() {
            if let Register::Distributor(off) = write.register {
                self.v2_apply(off, value);
            }
            return;
        }
        match write.register {
            Register::Distributor(CTLR) => self.gicd_ctlr = value & CTLR_GRP1,
            Register::Distributor(off) => self.bits_write(off, value, 32..1020),
            Register::Redistributor { vcpu, offset } if vcpu == self.vcpu => match offset {
                GICR_WAKER => {
                    let sleep = value & WAKER_PROCESSOR_SLEEP;
                    self.waker = sleep | if sleep != 0 { WAKER_CHILDREN_ASLEEP } else { 0 };
                }
                o if o == SGI_FRAME + ISACTIVER => self.activate(value),
                o if o == SGI_FRAME + ICACTIVER => self.deactivate(value),
                o if o >= SGI_FRAME => self.bits_write(o - SGI_FRAME, value, 0..32),
                _ => {}
            },
            Register::Redistributor { .. } => {}
        }
    }

    /// Marks SGIs and PPIs active (`value`'s bits), as GICR_ISACTIVER0 or GICD_ISACTIVER0 asks.
    fn activate(&mut self, value: u32) {
        self.active |= value;
        self.activate |= value;
        self.deactivate &= !value;
    }

    /// Deactivates SGIs and PPIs, as GICR_ICACTIVER0 or GICD_ICACTIVER0 asks.
    fn deactivate(&mut self, value: u32) {
        self.active &= !value;
        self.deactivate |= value;
        self.activate &= !value;
    }

    fn register_value(&self, register: Register) -> u64 {
        let me = self.vcpu;
        match register {
            Register::Distributor(off) if self.windows.is_v2() => u64::from(self.v2_read(off)),
            Register::Distributor(off) => u64::from(self.dist_read(off)),
            Register::Redistributor { vcpu, offset } => match offset {
                // Affinity = vCPU index; Processor_Number; Last on the final redistributor.
                GICR_TYPER => vcpu << 32 | vcpu << 8 | u64::from(vcpu + 1 == self.vcpus) << 4,
                GICR_WAKER if vcpu == me => self.waker.into(),
                o if vcpu == me && (o == SGI_FRAME + ISACTIVER || o == SGI_FRAME + ICACTIVER) => {
                    self.active.into()
                }
                PIDR2 => PIDR2_VALUE.into(),
                o if vcpu == me && o >= SGI_FRAME => u64::from(self.private_read(o - SGI_FRAME)),
                _ => 0,
            },
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
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOWS: GicWindows = GicWindows::v3(0x0800_0000, 0x080a_0000, 0x2_0000);
    const GICD: u64 = WINDOWS.distributor;
    const GICR1: u64 = WINDOWS.redistributors + WINDOWS.stride;

    fn write(gic: &mut VirtualGic, gpa: u64, size: u8, value: u64) {
        let access = gic.decode(gpa).expect("a GIC register");
        let effect = gic.write(access, size, value);
        gic.apply(effect);
    }

    fn read(gic: &VirtualGic, gpa: u64, size: u8) -> u64 {
        gic.read(gic.decode(gpa).expect("a GIC register"), size)
    }

    #[test]
    fn only_the_partitions_windows_decode() {
        let gic = VirtualGic::new(WINDOWS, 0, 2);
        assert!(gic.decode(GICD + DISTRIBUTOR_SIZE - 4).is_some());
        assert!(gic.decode(GICD + DISTRIBUTOR_SIZE).is_none());
        assert!(gic.decode(GICR1 + 0x14).is_some());
        assert_eq!(
            gic.decode(WINDOWS.redistributors + 2 * WINDOWS.stride),
            None,
            "a third vCPU's redistributor"
        );
        assert_eq!(gic.decode(0x0900_0000), None);
    }

    #[test]
    fn spis_are_enabled_raised_and_prioritised_through_the_distributor() {
        let mut gic = VirtualGic::new(WINDOWS, 0, 1);
        write(&mut gic, GICD + ISENABLER + 8, 4, 1 << 1); // INTID 65
        write(&mut gic, GICD + IPRIORITYR + 65, 1, 0x40);
        write(&mut gic, GICD + ISPENDR + 8, 4, 1 << 1);
        assert_eq!(read(&gic, GICD + ISENABLER + 8, 4), 1 << 1);
        assert_eq!(read(&gic, GICD + IPRIORITYR + 64, 4), 0x40 << 8);
        assert_eq!(read(&gic, GICD + IPRIORITYR + 65, 1), 0x40);
        let next = gic.interrupts.take_next(|_| false).expect("pending");
        assert_eq!((next.intid, next.priority), (65, 0x40));
        write(&mut gic, GICD + ICENABLER + 8, 4, 1 << 1);
        assert_eq!(read(&gic, GICD + ISENABLER + 8, 4), 0);
    }

    #[test]
    fn the_distributor_ignores_sgis_and_ppis_and_redistributors_only_them() {
        let mut gic = VirtualGic::new(WINDOWS, 0, 1);
        write(&mut gic, GICD + ISENABLER, 4, u64::from(u32::MAX));
        assert_eq!(read(&gic, GICD + ISENABLER, 4), 0);
        let sgi = WINDOWS.redistributors + SGI_FRAME;
        write(&mut gic, sgi + ISENABLER, 4, 1 << 27);
        assert_eq!(read(&gic, sgi + ISENABLER, 4), 1 << 27);
        assert_eq!(read(&gic, GICD + ISENABLER, 4), 0, "RAZ in the distributor");
    }

    #[test]
    fn a_vcpu_writes_only_its_own_redistributor() {
        let mut gic = VirtualGic::new(WINDOWS, 0, 2);
        write(&mut gic, GICR1 + SGI_FRAME + ISENABLER, 4, 1 << 27);
        assert!(!gic.interrupts.deliverable());
        assert_eq!(read(&gic, GICR1 + SGI_FRAME + ISENABLER, 4), 0);
        assert_eq!(read(&gic, GICR1 + GICR_WAKER, 4), 0);
    }

    #[test]
    fn redistributors_identify_their_vcpu_and_the_last_one() {
        let gic = VirtualGic::new(WINDOWS, 0, 2);
        assert_eq!(read(&gic, WINDOWS.redistributors + GICR_TYPER, 8), 0);
        assert_eq!(read(&gic, GICR1 + GICR_TYPER, 8), 1 << 32 | 1 << 8 | 1 << 4);
        assert_eq!(
            read(&gic, GICR1 + GICR_TYPER + 4, 4),
            1,
            "upper half: affinity"
        );
    }

    #[test]
    fn waking_the_redistributor_clears_children_asleep() {
        let mut gic = VirtualGic::new(WINDOWS, 0, 1);
        let waker = WINDOWS.redistributors + GICR_WAKER;
        assert_eq!(read(&gic, waker, 4), 0b110);
        write(&mut gic, waker, 4, 0);
        assert_eq!(read(&gic, waker, 4), 0);
    }

    #[test]
    fn byte_writes_keep_the_other_bytes_and_reads_return_only_their_bytes() {
        let mut gic = VirtualGic::new(WINDOWS, 0, 1);
        write(&mut gic, GICD + IPRIORITYR + 32, 4, 0x4030_2010);
        write(&mut gic, GICD + IPRIORITYR + 34, 1, 0xff);
        assert_eq!(read(&gic, GICD + IPRIORITYR + 32, 4), 0x40ff_2010);
        assert_eq!(read(&gic, GICD + IPRIORITYR + 33, 1), 0x20);
        assert_eq!(read(&gic, GICD + IPRIORITYR + 34, 2), 0x40ff);
    }

    #[test]
    fn active_sgis_and_ppis_read_as_the_backend_says_and_writes_go_to_the_backend() {
        let mut gic = VirtualGic::new(WINDOWS, 0, 1);
        let frame = WINDOWS.redistributors + SGI_FRAME;
        gic.set_active(1 << 27);
        assert_eq!(read(&gic, frame + ISACTIVER, 4), 1 << 27);
        assert_eq!(read(&gic, frame + ICACTIVER, 4), 1 << 27);
        write(&mut gic, frame + ICACTIVER, 4, 1 << 27);
        write(&mut gic, frame + ISACTIVER, 4, 1 << 3);
        // The backend has not made the changes yet: its list registers still say 27.
        gic.set_active(1 << 27);
        assert_eq!(read(&gic, frame + ISACTIVER, 4), 1 << 3);
        assert_eq!(gic.take_active_changes(), (1 << 3, 1 << 27));
        assert_eq!(gic.take_active_changes(), (0, 0));
        assert_eq!(
            read(&gic, GICD + ISACTIVER, 4),
            0,
            "SPIs' active state is not emulated"
        );
    }

    #[test]
    fn computing_a_write_changes_nothing_until_it_is_applied() {
        let mut gic = VirtualGic::new(WINDOWS, 0, 1);
        let before = gic;
        let effect = gic.write(gic.decode(GICD + CTLR).unwrap(), 4, 0x2);
        assert_eq!(gic, before);
        gic.apply(effect);
        assert_eq!(read(&gic, GICD + CTLR, 4), u64::from(CTLR_ARE | CTLR_GRP1));
    }
}
