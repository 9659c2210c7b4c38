//! A GICv2's distributor as a partition sees it (Arm IHI 0048B, 4.3): one 4 KiB frame whose
//! first word of each bank (INTIDs 0-31, the SGIs and PPIs) each vCPU sees as its own, its SGIs
//! sent through GICD_SGIR. The CPU interface needs no emulation: the guest reaches the hardware's
//! virtual CPU interface in its place.
//!
//! Every interrupt is Group 0 (GICD_IGROUPR reads as zero, writes are ignored), which a guest's
//! virtual CPU interface signals as IRQ; that is the group Linux's GICv2 driver enables.

use super::{
    BANKS_END, CTLR, ICACTIVER, IGROUPR, IIDR, IPRIORITYR, IPRIORITYR_END, ISACTIVER, ISENABLER,
    TYPER, VirtualGic, first_of,
};
use crate::devices::vintc::VirtualInterrupts;

/// GICD_ITARGETSR0-254 (4.3.12): a byte per interrupt, the CPU interfaces it goes to.
const ITARGETSR: u64 = 0x800;
const ITARGETSR_END: u64 = 0xc00;
/// GICD_ICFGR0 (4.3.13): the SGIs' configuration, read-only "edge" (0b10 per SGI).
const ICFGR0: u64 = 0xc00;
const SGIS_EDGE: u32 = 0xaaaa_aaaa;
/// GICD_SGIR (4.3.15).
pub(super) const SGIR: u64 = 0xf00;
/// GICD_CTLR bits 0 and 1: Group 0 and Group 1 forwarding enabled.
const CTLR_ENABLES: u32 = 0b11;
/// GICD_TYPER (4.3.2): ITLinesNumber = 7 (256 INTIDs), CPUNumber in bits 7:5, no Security
/// Extensions.
const TYPER_LINES: u32 = 7;
const TYPER_CPUS_SHIFT: u32 = 5;
/// A GIC-400's GICD_IIDR: Arm (0x43b), product 0x02.
const IIDR_VALUE: u32 = 0x0200_143b;
/// GICD_PIDR2 (4.3.16, table 4-2): ArchRev = 2, GICv2.
const PIDR2: u64 = 0xfe8;
const PIDR2_VALUE: u32 = 0x20;
/// SGIs 0-15 are always enabled in a GIC-400 (their GICD_ISENABLER0 bits are RAO/WI, 4.3.5).
const SGIS: u32 = 0xffff;

/// The SGIs' enable bits as a GICv2 powers on: set, for good.
pub(super) fn enable_sgis(interrupts: &mut VirtualInterrupts) {
    (0..16).for_each(|i| interrupts.set_enabled(i, true));
}

impl VirtualGic {
    pub(super) fn v2_read(&self, off: u64) -> u32 {
        let me = 1u32 << (self.vcpu % 8);
        match off {
            CTLR => self.gicd_ctlr,
            TYPER => TYPER_LINES | ((self.vcpus.clamp(1, 8) - 1) as u32) << TYPER_CPUS_SHIFT,
            IIDR => IIDR_VALUE,
            PIDR2 => PIDR2_VALUE,
            IGROUPR..ISENABLER => 0,
            ISACTIVER | ICACTIVER => self.active,
            ISACTIVER..IPRIORITYR => 0,
            // SPIs go to the vCPU whose model raises them: each reads its own interface.
            ITARGETSR..ITARGETSR_END => me * 0x0101_0101,
            ICFGR0 => SGIS_EDGE,
            _ if (ISENABLER..BANKS_END).contains(&off)
                || (IPRIORITYR..IPRIORITYR_END).contains(&off) =>
            {
                self.bits_read(off)
            }
            _ => 0,
        }
    }

    pub(super) fn v2_apply(&mut self, off: u64, value: u32) {
        match off {
            CTLR => self.gicd_ctlr = value & CTLR_ENABLES,
            ISACTIVER => self.activate(value),
            ICACTIVER => self.deactivate(value),
            _ if (ISENABLER..BANKS_END).contains(&off) => {
                let value = if first_of(off) == Some(0) {
                    value & !SGIS
                } else {
                    value
                };
                self.bits_write(off, value, 0..1020);
            }
            IPRIORITYR..IPRIORITYR_END => self.bits_write(off, value, 0..1020),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{GicWindows, ICENABLER, ISPENDR, V2_FRAME};
    use super::*;

    const GICD: u64 = 0x0800_0000;

    fn write(gic: &mut VirtualGic, off: u64, size: u8, value: u64) {
        let access = gic.decode(GICD + off).expect("a distributor register");
        let effect = gic.write(access, size, value);
        gic.apply(effect);
    }

    fn read(gic: &VirtualGic, off: u64, size: u8) -> u64 {
        gic.read(
            gic.decode(GICD + off).expect("a distributor register"),
            size,
        )
    }

    #[test]
    fn the_distributor_is_one_page_with_no_redistributors() {
        let gic = VirtualGic::new(GicWindows::v2(GICD), 0, 2);
        assert!(gic.decode(GICD + V2_FRAME - 4).is_some());
        assert_eq!(gic.decode(GICD + V2_FRAME), None);
        assert_eq!(gic.decode(0x080a_0000), None);
        assert_eq!(read(&gic, PIDR2, 4), 0x20, "ArchRev 2");
        assert_eq!(
            read(&gic, TYPER, 4),
            7 | 1 << 5,
            "256 INTIDs, two CPU interfaces"
        );
    }

    #[test]
    fn sgis_and_ppis_are_banked_in_the_distributor() {
        let mut gic = VirtualGic::new(GicWindows::v2(GICD), 1, 2);
        assert_eq!(read(&gic, ISENABLER, 4), 0xffff, "SGIs always enabled");
        write(&mut gic, ISENABLER, 4, 1 << 27 | 1 << 3);
        write(&mut gic, ICENABLER, 4, 0xffff);
        assert_eq!(
            read(&gic, ISENABLER, 4),
            0xffff | 1 << 27,
            "SGI enables are RAO/WI"
        );
        write(&mut gic, IPRIORITYR + 27, 1, 0xa0);
        assert_eq!(read(&gic, IPRIORITYR + 24, 4), 0xa0 << 24);
        assert_eq!(
            read(&gic, ITARGETSR + 28, 4),
            0x0202_0202,
            "vCPU 1's interface"
        );
        assert_eq!(read(&gic, IGROUPR, 4), 0, "every interrupt Group 0");
        assert_eq!(read(&gic, ICFGR0, 4), u64::from(SGIS_EDGE));
    }

    #[test]
    fn spis_are_enabled_raised_and_delivered() {
        let mut gic = VirtualGic::new(GicWindows::v2(GICD), 0, 1);
        write(&mut gic, ISENABLER + 4, 4, 1 << 1); // INTID 33
        write(&mut gic, IPRIORITYR + 33, 1, 0x40);
        write(&mut gic, ISPENDR + 4, 4, 1 << 1);
        let next = gic.interrupts.take_next(|_| false).expect("pending");
        assert_eq!((next.intid, next.priority), (33, 0x40));
    }

    #[test]
    fn active_state_of_sgis_and_ppis_goes_to_the_backend() {
        let mut gic = VirtualGic::new(GicWindows::v2(GICD), 0, 1);
        gic.set_active(1 << 27);
        assert_eq!(read(&gic, ISACTIVER, 4), 1 << 27);
        write(&mut gic, ICACTIVER, 4, 1 << 27);
        assert_eq!(gic.take_active_changes(), (0, 1 << 27));
    }

    #[test]
    fn a_write_of_gicd_sgir_is_an_sgi_request_and_changes_nothing() {
        let gic = VirtualGic::new(GicWindows::v2(GICD), 0, 2);
        let access = gic.decode(GICD + SGIR).unwrap();
        let request = gic.sgi_request(access, 0b10 << 16 | 5).expect("an SGI");
        assert_eq!((request.intid, request.targets), (5, 0b10));
        let ctlr = gic.decode(GICD + CTLR).unwrap();
        assert_eq!(gic.sgi_request(ctlr, 1), None);
        let v3 = VirtualGic::new(GicWindows::v3(GICD, 0x080a_0000, 0x2_0000), 0, 2);
        assert_eq!(v3.sgi_request(v3.decode(GICD + SGIR).unwrap(), 5), None);
    }
}
