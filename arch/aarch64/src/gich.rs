//! A GICv2's virtual interface control (GICH, Arm IHI 0048B, 5.3): the memory-mapped twin of
//! the GICv3's ICH_*_EL2 registers, banked per CPU at one address. The rest of the hypervisor
//! handles list registers in the GICv3 layout (`lr`); here they are translated both ways.
//!
//! A guest of a GICv2 sees its interrupts as Group 0: its CPU interface (the virtual one, mapped
//! at its GICC address) enables Group 0 with GICC_CTLR bit 0, as Linux's GICv2 driver does, and
//! with FIQEn clear a virtual Group 0 interrupt is a virtual IRQ (5.3.7, 5.4).

use core::sync::atomic::{AtomicU64, Ordering};

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

register_structs! {
    /// IHI 0048B, 5.3.1.
    pub Gich {
        (0x000 => hcr: ReadWrite<u32>),
        (0x004 => vtr: ReadOnly<u32>),
        (0x008 => vmcr: ReadWrite<u32>),
        (0x00c => _misr_eisr_elrsr),
        (0x0f0 => apr: ReadWrite<u32>),
        (0x0f4 => _reserved),
        (0x100 => lr: [ReadWrite<u32>; 64]),
        (0x200 => @END),
    }
}

/// GICH_VMCR.VMGrp0En (5.3.4): the guest's GICV_CTLR bit 0, the group its interrupts are.
const VMCR_GRP0: u32 = 1 << 0;

/// GICH_LR fields (5.3.10): VirtualID [9:0], PhysicalID [19:10] (with HW clear: EOI in bit 19,
/// an SGI's source CPU in 12:10), Priority [27:23] (the top five bits of eight), State [29:28]
/// (the GICv3's encoding), Grp1 [30] (left clear: Group 0), HW [31].
const V2_ID: u32 = 0x3ff;
const V2_PHYSICAL_SHIFT: u32 = 10;
const V2_PRIORITY_SHIFT: u32 = 23;
const V2_STATE_SHIFT: u32 = 28;
const V2_HW: u32 = 1 << 31;
/// ICH_LR<n>_EL2 (IHI 0069, 12.4.6): vINTID [31:0], pINTID [44:32], Priority [55:48], Group
/// [60], HW [61], State [63:62].
const V3_PHYSICAL_SHIFT: u32 = 32;
const V3_PRIORITY_SHIFT: u32 = 48;
const V3_GROUP1: u64 = 1 << 60;
const V3_HW: u64 = 1 << 61;
const V3_STATE_SHIFT: u32 = 62;

/// The frame's address, 0 on a GICv3 board; set once by [`use_frame`] before any vCPU runs.
static BASE: AtomicU64 = AtomicU64::new(0);

/// The board's GIC is a GICv2 whose virtual interface control is at `base`.
pub fn use_frame(base: u64) {
    BASE.store(base, Ordering::Relaxed);
}

/// The frame, if the board's GIC is a GICv2.
#[inline(always)]
pub fn frame() -> Option<&'static Gich> {
    let base = BASE.load(Ordering::Relaxed);
    // SAFETY: the board's GICH frame, mapped as Device memory by the boot map; this CPU's bank
    // holds the virtual interface of the vCPU it runs, which only this CPU touches.
    (base != 0).then(|| unsafe { &*(base as *const Gich) })
}

impl Gich {
    /// GICH_VTR.ListRegs + 1 (5.3.2).
    pub fn list_registers(&self) -> usize {
        (self.vtr.get() & 0x3f) as usize + 1
    }

    /// List register `n` in the GICv3 layout.
    #[inline(always)]
    pub fn read(&self, n: usize) -> u64 {
        from_v2(self.lr[n % 64].get())
    }

    /// Writes list register `n` from a GICv3-layout value.
    #[inline(always)]
    pub fn write(&self, n: usize, value: u64) {
        self.lr[n % 64].set(to_v2(value));
    }

    /// GICH_HCR: En, and UIE (the underflow maintenance interrupt), at the GICv3's bits.
    pub fn set_controls(&self, hcr: u64) {
        self.hcr.set(hcr as u32);
    }

    pub fn vmcr(&self) -> u64 {
        self.vmcr.get().into()
    }

    pub fn set_vmcr(&self, value: u64) {
        self.vmcr.set(value as u32);
    }

    /// Whether the guest has enabled the group its interrupts are.
    pub fn guest_enabled(&self) -> bool {
        self.vmcr.get() & VMCR_GRP0 != 0
    }

    /// GICH_APR: the guest's active priorities (5.3.9).
    pub fn active_priorities(&self) -> u64 {
        self.apr.get().into()
    }

    pub fn set_active_priorities(&self, value: u64) {
        self.apr.set(value as u32);
    }
}

fn to_v2(v: u64) -> u32 {
    let field = |shift: u32, mask: u64| ((v >> shift) & mask) as u32;
    field(0, V2_ID.into())
        | field(V3_PHYSICAL_SHIFT, V2_ID.into()) << V2_PHYSICAL_SHIFT
        | field(V3_PRIORITY_SHIFT + 3, 0x1f) << V2_PRIORITY_SHIFT
        | field(V3_STATE_SHIFT, 0b11) << V2_STATE_SHIFT
        | if v & V3_HW != 0 { V2_HW } else { 0 }
}

fn from_v2(r: u32) -> u64 {
    let field = |shift: u32, mask: u32| u64::from((r >> shift) & mask);
    field(0, V2_ID)
        | field(V2_PHYSICAL_SHIFT, V2_ID) << V3_PHYSICAL_SHIFT
        | field(V2_PRIORITY_SHIFT, 0x1f) << (V3_PRIORITY_SHIFT + 3)
        | V3_GROUP1
        | if r & V2_HW != 0 { V3_HW } else { 0 }
        | field(V2_STATE_SHIFT, 0b11) << V3_STATE_SHIFT
}
