//! The GICv3 virtual CPU interface's list registers, ICH_LR<n>_EL2 (Arm IHI 0069, 12.4.6).

use crate::sysreg::{read_sysreg, write_sysreg};

pub const STATE_SHIFT: u64 = 62;
pub const STATE_MASK: u64 = 0b11 << STATE_SHIFT;
pub const STATE_PENDING: u64 = 0b01 << STATE_SHIFT;
pub const HW: u64 = 1 << 61;
pub const GROUP1: u64 = 1 << 60;
pub const PRIORITY_SHIFT: u64 = 48;
pub const PINTID_SHIFT: u64 = 32;
pub const VINTID_MASK: u64 = 0xffff_ffff;

/// How many list registers this CPU implements: ICH_VTR_EL2.ListRegs + 1.
pub fn count() -> usize {
    ((read_sysreg!("ich_vtr_el2") & 0x1f) + 1) as usize
}

macro_rules! lr_access {
    ($($n:literal),*) => {
        /// Reads list register `n` (< [`count`]).
        pub fn read(n: usize) -> u64 {
            match n {
                $($n => read_sysreg!(concat!("ich_lr", $n, "_el2")),)*
                _ => 0,
            }
        }

        /// Writes list register `n` (< [`count`]).
        pub fn write(n: usize, value: u64) {
            match n {
                // SAFETY: the list registers belong to the vCPU this CPU runs; the caller
                // builds `value` from the vCPU's own interrupt state.
                $($n => unsafe { write_sysreg!(concat!("ich_lr", $n, "_el2"), value) },)*
                _ => {}
            }
        }
    };
}

lr_access!(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
