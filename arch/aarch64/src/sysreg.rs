//! The few system registers aarch64-cpu 11.2 lacks or only lets read (crates.md): VPIDR_EL2,
//! CNTHP_CVAL_EL2, CTR_EL0, and the GICv3 CPU interface's ICC_* registers (priority mask,
//! control, group enables, acknowledge, end and deactivate, SGI generation, binary points, active
//! priorities). Every other register goes through the crate's typed accessors and named fields;
//! TLBI, DC and IC are inline assembly where they are used. Reads through [`read_sysreg!`] have
//! no side effects (ICC_IAR1_EL1 and ICC_IAR0_EL1, which acknowledge, are read in
//! [`crate::gic`]); writes change how the CPU behaves, so [`write_sysreg!`] must be used inside
//! an `unsafe` block that says why.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{MPIDR_EL1, Readable};

/// Reads a system register by its assembler name.
macro_rules! read_sysreg {
    ($name:expr) => {{
        let value: u64;
        // SAFETY: reading this register has no side effect (see the module documentation).
        unsafe {
            core::arch::asm!(concat!("mrs {}, ", $name), out(reg) value, options(nomem, nostack))
        };
        value
    }};
}

/// Writes a system register by its assembler name. Expands to inline assembly: the caller's
/// `unsafe` block states why the write is sound.
macro_rules! write_sysreg {
    ($name:expr, $value:expr) => {
        core::arch::asm!(concat!("msr ", $name, ", {}"), in(reg) ($value as u64), options(nostack))
    };
}

pub(crate) use {read_sysreg, write_sysreg};

/// Instruction synchronization barrier: later instructions see earlier system-register writes.
pub fn isb() {
    barrier::isb(barrier::SY);
}

/// Data synchronization barrier over the inner-shareable domain.
pub fn dsb_ish() {
    barrier::dsb(barrier::ISH);
}

/// This CPU's index: MPIDR_EL1.Aff0 (QEMU `virt` numbers CPUs 0..n in Aff0).
pub fn cpu_index() -> usize {
    MPIDR_EL1.read(MPIDR_EL1::Aff0) as usize
}
