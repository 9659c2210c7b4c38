//! The registers of one CPU's SGIs and PPIs (INTIDs 0-31), laid out alike in a GICv3
//! redistributor's SGI_base frame (Arm IHI 0069, 12.11) and, banked per CPU, at the start of a
//! GICv2 distributor (IHI 0048B, 4.3: the first word of each bank).

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_structs;
use tock_registers::registers::ReadWrite;

register_structs! {
    pub Bank {
        (0x000 => _control),
        (0x080 => igroupr0: ReadWrite<u32>),
        (0x084 => _igroupr),
        (0x100 => isenabler0: ReadWrite<u32>),
        (0x104 => _isenabler),
        (0x180 => icenabler0: ReadWrite<u32>),
        (0x184 => _icenabler),
        (0x280 => icpendr0: ReadWrite<u32>),
        (0x284 => _icpendr),
        (0x300 => isactiver0: ReadWrite<u32>),
        (0x304 => _isactiver),
        (0x380 => icactiver0: ReadWrite<u32>),
        (0x384 => _icactiver),
        (0x400 => ipriorityr: [ReadWrite<u32>; 8]),
        (0x420 => @END),
    }
}

/// The bit of each of `intids`.
pub fn mask(intids: &[u32]) -> u32 {
    intids.iter().fold(0, |m, i| m | 1 << i)
}

impl Bank {
    /// Enables `intids` at `priority`, as Group 1 interrupts if `group1` (Group 0 otherwise);
    /// with `group1` None their group is left as it is (a GICv2 seen from the non-secure side,
    /// whose GICD_IGROUPR0 is RAZ/WI, the firmware having made everything Group 1).
    pub fn enable(&self, intids: &[u32], priority: u32, group1: Option<bool>) {
        let bits = mask(intids);
        match group1 {
            Some(true) => self.igroupr0.set(self.igroupr0.get() | bits),
            Some(false) => self.igroupr0.set(self.igroupr0.get() & !bits),
            None => {}
        }
        for &intid in intids {
            let reg = &self.ipriorityr[(intid / 4) as usize];
            let shift = 8 * (intid % 4);
            reg.set((reg.get() & !(0xff << shift)) | priority << shift);
        }
        self.isenabler0.set(bits);
    }

    pub fn disable(&self, intid: u32) {
        self.icenabler0.set(1 << intid);
    }

    /// Whether `intid` is Group 1.
    pub fn group1(&self, intid: u32) -> bool {
        self.igroupr0.get() & (1 << intid) != 0
    }

    pub fn active(&self, intid: u32) -> bool {
        self.isactiver0.get() & (1 << intid) != 0
    }

    /// Deactivates the interrupts whose bits `bits` has, whoever acknowledged them.
    pub fn deactivate(&self, bits: u32) {
        self.icactiver0.set(bits);
    }

    /// Drops pending PPIs, or (on a GICv3) SGIs, whose bits `bits` has.
    pub fn clear_pending(&self, bits: u32) {
        self.icpendr0.set(bits);
    }
}
