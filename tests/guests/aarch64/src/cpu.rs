//! Instructions the guests use, wrapped. Guests are bare-metal test programs: each wrapper is
//! exactly the instruction, so tests can provoke what they mean to.

use core::arch::asm;

pub fn mmio_write32(addr: u64, value: u32) {
    // SAFETY: a test guest owns its (virtual) machine; device writes are what it tests.
    unsafe { asm!("str {v:w}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack)) }
}

pub fn mmio_read32(addr: u64) -> u32 {
    let v: u32;
    // SAFETY: as above.
    unsafe { asm!("ldr {v:w}, [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack)) }
    v
}

pub fn read_u64(addr: u64) -> u64 {
    let v: u64;
    // SAFETY: may be outside the partition's memory on purpose (the hostile guest).
    unsafe { asm!("ldr {v}, [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack)) }
    v
}

pub fn write_u64(addr: u64, value: u64) {
    // SAFETY: as `read_u64`.
    unsafe { asm!("str {v}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack)) }
}

/// A store with post-index writeback: the hypervisor gets no syndrome (ESR_EL2.ISV = 0).
pub fn write_with_writeback(addr: u64, value: u64) {
    // SAFETY: as `read_u64`.
    unsafe {
        asm!("str {v}, [{a}], #8", a = inout(reg) addr => _, v = in(reg) value, options(nostack))
    }
}

/// Reads the EL1 physical timer's control register, which the hypervisor emulates.
pub fn read_physical_timer() -> u64 {
    let v: u64;
    // SAFETY: the guest's own (emulated) physical timer.
    unsafe { asm!("mrs {}, cntp_ctl_el0", out(reg) v, options(nomem, nostack)) }
    v
}

/// Writes the EL1 physical timer's compare value, which the hypervisor emulates.
pub fn write_physical_timer(value: u64) {
    // SAFETY: as `read_physical_timer`.
    unsafe { asm!("msr cntp_cval_el0, {}", in(reg) value, options(nomem, nostack)) }
}

pub fn virtual_count() -> u64 {
    let v: u64;
    // SAFETY: reads the virtual counter.
    unsafe { asm!("isb", "mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack)) }
    v
}

/// Reads the physical counter, which the hypervisor traps for a fault-tolerant partition.
pub fn physical_count() -> u64 {
    let v: u64;
    // SAFETY: reads the physical counter.
    unsafe { asm!("isb", "mrs {}, cntpct_el0", out(reg) v, options(nomem, nostack)) }
    v
}

pub fn counter_frequency() -> u64 {
    let v: u64;
    // SAFETY: reads CNTFRQ_EL0.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) v, options(nomem, nostack)) }
    v
}

/// Masks every interrupt and waits for one forever: only the hypervisor can end this.
pub fn halt_forever() -> ! {
    // SAFETY: deliberately stops the guest; only the hypervisor's reaction matters.
    unsafe { asm!("msr daifset, #0xf", "2: wfi", "b 2b", options(noreturn)) }
}
