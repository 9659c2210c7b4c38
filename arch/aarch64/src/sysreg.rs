//! System-register access. Reads of the registers named in this crate have no side effects (the
//! one exception, ICC_IAR1_EL1, is read through [`crate::gic::acknowledge`]); writes change how
//! the CPU behaves, so [`write_sysreg!`] must be used inside an `unsafe` block that says why.

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
    // SAFETY: a barrier only orders execution.
    unsafe { core::arch::asm!("isb", options(nostack)) }
}

/// Data synchronization barrier over the inner-shareable domain.
pub fn dsb_ish() {
    // SAFETY: a barrier only orders memory accesses.
    unsafe { core::arch::asm!("dsb ish", options(nostack)) }
}

/// This CPU's index: MPIDR_EL1.Aff0 (QEMU `virt` numbers CPUs 0..n in Aff0).
pub fn cpu_index() -> usize {
    (read_sysreg!("mpidr_el1") & 0xff) as usize
}
