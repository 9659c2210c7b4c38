//! The virtual CPU interface's registers: a GICv3's ICH_*_EL2 system registers (Arm IHI 0069,
//! 12.4), or a GICv2's memory-mapped GICH frame (`gich`, IHI 0048B, 5.3). List registers are
//! handled in the GICv3 layout, aarch64-cpu's ICH_LR0_EL2, which every list register shares;
//! a GICv2's are translated.

use aarch64_cpu::registers::*;
use tock_registers::{LocalRegisterCopy, register_bitfields};

use crate::gich;
use crate::sysreg::{read_sysreg, write_sysreg};

register_bitfields! {u64,
    /// ICH_VMCR_EL2 (IHI 0069, 12.4.10), whose fields aarch64-cpu does not name.
    ICH_VMCR [
        /// The guest's ICC_IGRPEN1_EL1: virtual Group 1 interrupts enabled.
        VENG1 OFFSET(1) NUMBITS(1) []
    ]
}

/// A list register's value, decoded or being built.
pub type ListRegister = LocalRegisterCopy<u64, ICH_LR0_EL2::Register>;

/// How many list registers this CPU implements: ICH_VTR_EL2.ListRegs + 1, or GICH_VTR's.
pub fn count() -> usize {
    match gich::frame() {
        Some(gich) => gich.list_registers(),
        None => ICH_VTR_EL2.read(ICH_VTR_EL2::ListRegs) as usize + 1,
    }
}

/// The virtual interface's controls (ICH_HCR_EL2 or GICH_HCR, whose En and UIE bits agree).
pub fn set_controls(hcr: LocalRegisterCopy<u64, ICH_HCR_EL2::Register>) {
    match gich::frame() {
        Some(gich) => gich.set_controls(hcr.get()),
        None => ICH_HCR_EL2.set(hcr.get()),
    }
}

/// Whether the guest has enabled the group its virtual interrupts are (Group 1 on a GICv3,
/// ICH_VMCR_EL2.VENG1; Group 0 on a GICv2, `gich`).
pub fn guest_enabled() -> bool {
    match gich::frame() {
        Some(gich) => gich.guest_enabled(),
        None => LocalRegisterCopy::<u64, ICH_VMCR::Register>::new(ICH_VMCR_EL2.get())
            .is_set(ICH_VMCR::VENG1),
    }
}

/// The guest's CPU interface controls (priority mask, group enables, binary points):
/// ICH_VMCR_EL2 or GICH_VMCR, as the GIC has it.
pub fn vmcr() -> u64 {
    match gich::frame() {
        Some(gich) => gich.vmcr(),
        None => ICH_VMCR_EL2.get(),
    }
}

pub fn set_vmcr(value: u64) {
    match gich::frame() {
        Some(gich) => gich.set_vmcr(value),
        None => ICH_VMCR_EL2.set(value),
    }
}

/// The guest's active priorities: ICH_AP0R0_EL2 and ICH_AP1R0_EL2, or GICH_APR and 0.
pub fn active_priorities() -> (u64, u64) {
    match gich::frame() {
        Some(gich) => (gich.active_priorities(), 0),
        None => (read_sysreg!("ich_ap0r0_el2"), read_sysreg!("ich_ap1r0_el2")),
    }
}

pub fn set_active_priorities((ap0, ap1): (u64, u64)) {
    match gich::frame() {
        Some(gich) => gich.set_active_priorities(ap0),
        // SAFETY: the active priorities of the guest this CPU runs, which is not running.
        None => unsafe {
            write_sysreg!("ich_ap0r0_el2", ap0);
            write_sysreg!("ich_ap1r0_el2", ap1);
        },
    }
}

/// Whether the list register holds an interrupt (pending, active or both).
pub fn in_use(lr: ListRegister) -> bool {
    lr.read(ICH_LR0_EL2::State) != 0
}

// Inlined: the exit path reads and writes list registers before every entry, and a call plus
// jump table per access showed in `cargo xtask bench`.
macro_rules! lr_access {
    ($($n:literal => $reg:ident),*) => {
        /// Reads list register `n` (< [`count`]).
        #[inline(always)]
        pub fn read(n: usize) -> ListRegister {
            if let Some(gich) = gich::frame() {
                return ListRegister::new(gich.read(n));
            }
            ListRegister::new(match n {
                $($n => $reg.get(),)*
                _ => 0,
            })
        }

        /// Writes list register `n` (< [`count`]). The list registers belong to the vCPU this
        /// CPU runs; the caller builds `value` from the vCPU's own interrupt state.
        #[inline(always)]
        pub fn write(n: usize, value: ListRegister) {
            if let Some(gich) = gich::frame() {
                return gich.write(n, value.get());
            }
            match n {
                $($n => $reg.set(value.get()),)*
                _ => {}
            }
        }
    };
}

lr_access!(
    0 => ICH_LR0_EL2, 1 => ICH_LR1_EL2, 2 => ICH_LR2_EL2, 3 => ICH_LR3_EL2,
    4 => ICH_LR4_EL2, 5 => ICH_LR5_EL2, 6 => ICH_LR6_EL2, 7 => ICH_LR7_EL2,
    8 => ICH_LR8_EL2, 9 => ICH_LR9_EL2, 10 => ICH_LR10_EL2, 11 => ICH_LR11_EL2,
    12 => ICH_LR12_EL2, 13 => ICH_LR13_EL2, 14 => ICH_LR14_EL2, 15 => ICH_LR15_EL2
);
