//! The GICv3 virtual CPU interface's list registers, ICH_LR<n>_EL2 (Arm IHI 0069, 12.4.6). Their
//! fields are aarch64-cpu's ICH_LR0_EL2 layout, which every list register shares.

use aarch64_cpu::registers::*;
use tock_registers::LocalRegisterCopy;

/// A list register's value, decoded or being built.
pub type ListRegister = LocalRegisterCopy<u64, ICH_LR0_EL2::Register>;

/// How many list registers this CPU implements: ICH_VTR_EL2.ListRegs + 1.
pub fn count() -> usize {
    ICH_VTR_EL2.read(ICH_VTR_EL2::ListRegs) as usize + 1
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
            ListRegister::new(match n {
                $($n => $reg.get(),)*
                _ => 0,
            })
        }

        /// Writes list register `n` (< [`count`]). The list registers belong to the vCPU this
        /// CPU runs; the caller builds `value` from the vCPU's own interrupt state.
        #[inline(always)]
        pub fn write(n: usize, value: ListRegister) {
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
