//! Stage-2 translation: the VMSAv8-64 stage-2 descriptor format (Arm ARM D8.3, attributes
//! D8.5) for the portable builder in `tandem_core::paging`, and the tables of a partition, built
//! from its memory regions only: every other guest-physical address faults to EL2.
//!
//! 4 KiB granule, 39-bit IPA space (VTCR_EL2.T0SZ = 25) so walks start at level 1 (SL0 = 1);
//! 2 MiB blocks where both addresses and the remaining size allow, 4 KiB pages elsewhere.

use aarch64_cpu::registers::VTCR_EL2;
use tandem_core::addr::{GuestPhysAddr, HostPhysAddr};
use tandem_core::config::{Gic, GicCpu, MemoryRegion};
use tandem_core::devices::vgic::V2_CPU_INTERFACE_SIZE;
use tandem_core::paging::{Attrs, EntryFormat, MemKind, Perms};
use tandem_hw::frames::OutOfFrames;
use tandem_hw::tables::{self, DeviceWindow};

/// VTCR_EL2 (Arm ARM D19.2.183): T0SZ = 25 (39-bit IPA space), SL0 = 1 (walks start at level
/// 1), inner/outer write-back, inner shareable, TG0 = 4 KiB, PS = 40 bits, RES1 bit 31.
pub const VTCR: u64 = VTCR_EL2::T0SZ.val(25).value
    | VTCR_EL2::SL0::Granule4KBLevel1.value
    | VTCR_EL2::IRGN0::NormalWBRAWA.value
    | VTCR_EL2::ORGN0::NormalWBRAWA.value
    | VTCR_EL2::SH0::Inner.value
    | VTCR_EL2::TG0::Granule4KB.value
    | VTCR_EL2::PS::PA_40B_1TB.value
    | VTCR_EL2::RES1::SET.value;

/// Bit 0: the descriptor is valid. Bit 1: at Arm levels 1 and 2 a table (clear: a block), at
/// level 3 a page (Arm ARM D8.3, VMSAv8-64 descriptor formats).
const VALID: u64 = 1 << 0;
const TABLE_OR_PAGE: u64 = 1 << 1;
/// MemAttr[3:0], bits 5:2 (D8.5, stage-2 memory type, without FEAT_S2FWB): 0b1111 Normal,
/// inner and outer write-back; 0b0001 Device-nGnRE. MemAttr[3:2] = 0 means Device.
const MEMATTR_SHIFT: u32 = 2;
const MEMATTR_NORMAL_WB: u64 = 0b1111 << MEMATTR_SHIFT;
const MEMATTR_DEVICE_NGNRE: u64 = 0b0001 << MEMATTR_SHIFT;
const MEMATTR_DEVICE_MASK: u64 = 0b1100 << MEMATTR_SHIFT;
/// S2AP[1:0], bits 7:6 (D8.4, stage-2 data access permissions): bit 6 grants reads, bit 7
/// writes.
const S2AP_READ: u64 = 1 << 6;
const S2AP_WRITE: u64 = 1 << 7;
/// SH[1:0], bits 9:8: inner shareable, as VTCR_EL2.SH0 says the walks are (Device memory is
/// always treated as outer shareable, so the field only matters for Normal memory).
const SH_INNER: u64 = 0b11 << 8;
/// Bit 10: the access flag, set so no access flag fault is taken.
const AF: u64 = 1 << 10;
/// XN[1:0], bits 54:53 (D8.4, stage-2 execute-never, FEAT_XNX encoding): 0b10 not executable
/// at EL1 or EL0, 0b00 executable at both.
const XN: u64 = 0b10 << 53;
/// Bits 47:12: the output address (VTCR_EL2.PS limits it to 40 bits).
const ADDRESS: u64 = 0x0000_ffff_ffff_f000;

/// The stage-2 descriptor format: Arm levels 1 (root, level 2 here), 2 and 3 (level 0 here).
pub struct Stage2;

impl EntryFormat for Stage2 {
    const LEVELS: usize = 3;
    /// VTCR_EL2.PS = 0b010.
    const OUTPUT_BITS: u32 = 40;

    /// 2 MiB blocks (Arm level 2); 1 GiB blocks at level 1 are possible but not used.
    fn block_allowed(level: usize) -> bool {
        level == 1
    }

    /// S2AP and XN are independent: every combination can be expressed.
    fn encodable(_: Attrs) -> bool {
        true
    }

    /// Stage-2 table descriptors carry no attributes: the leaves alone restrict access.
    fn table(next: HostPhysAddr) -> u64 {
        next.raw() | VALID | TABLE_OR_PAGE
    }

    fn leaf(level: usize, hpa: HostPhysAddr, attrs: Attrs) -> u64 {
        let p = attrs.perms;
        let memory = match attrs.kind {
            MemKind::Normal => MEMATTR_NORMAL_WB | SH_INNER,
            MemKind::Device => MEMATTR_DEVICE_NGNRE,
        };
        hpa.raw()
            | VALID
            | if level == 0 { TABLE_OR_PAGE } else { 0 }
            | memory
            | if p.read { S2AP_READ } else { 0 }
            | if p.write { S2AP_WRITE } else { 0 }
            | AF
            | if p.execute { 0 } else { XN }
    }

    fn is_valid(entry: u64) -> bool {
        entry & VALID != 0
    }

    fn is_table(entry: u64, level: usize) -> bool {
        level > 0 && entry & TABLE_OR_PAGE != 0
    }

    fn address(entry: u64) -> HostPhysAddr {
        HostPhysAddr::new(entry & ADDRESS)
    }

    fn attrs(entry: u64) -> Attrs {
        Attrs {
            perms: Perms {
                read: entry & S2AP_READ != 0,
                write: entry & S2AP_WRITE != 0,
                execute: entry & XN == 0,
            },
            kind: if entry & MEMATTR_DEVICE_MASK == 0 {
                MemKind::Device
            } else {
                MemKind::Normal
            },
        }
    }
}

/// Builds the tables for `regions`, and on a GICv2 board the virtual CPU interface at the CPU
/// interface's address (the guest's GICC is the hardware's GICV, IHI 0048B 5.1), and returns the
/// level-1 table's address (for VTTBR_EL2).
pub fn build(regions: &[MemoryRegion], gic: Option<&Gic>) -> Result<u64, OutOfFrames> {
    let gicv = gic.and_then(|g| match g.cpu {
        GicCpu::V2 {
            cpu_interface,
            virtual_cpu_interface,
            ..
        } => Some(DeviceWindow {
            gpa: GuestPhysAddr::new(cpu_interface.raw()),
            hpa: virtual_cpu_interface,
            size: V2_CPU_INTERFACE_SIZE,
        }),
        GicCpu::V3 { .. } => None,
    });
    let root = tables::build::<Stage2>(regions, gicv.as_slice())?;
    // The table walker must see every entry before VTTBR_EL2 points at them.
    crate::sysreg::dsb_ish();
    Ok(root.raw())
}
