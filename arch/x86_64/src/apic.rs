//! The local APIC, used only to start the other CPUs (xAPIC MMIO, SDM Vol. 3A, 12.6).

use crate::io::{cpuid, rdmsr};
use crate::time::delay_us;

const IA32_APIC_BASE: u32 = 0x1b;
const ICR_LOW: u64 = 0x300;
const ICR_HIGH: u64 = 0x310;
const ICR_PENDING: u32 = 1 << 12;
const ICR_INIT_ASSERT: u32 = 0x0000_4500;
const ICR_STARTUP: u32 = 0x0000_4600;

/// This CPU's initial APIC ID, which Tandem uses as its CPU index.
pub fn cpu_index() -> usize {
    (cpuid(1, 0)[1] >> 24) as usize
}

fn base() -> u64 {
    // SAFETY: IA32_APIC_BASE exists on every CPU with VMX.
    unsafe { rdmsr(IA32_APIC_BASE) & 0xf_ffff_f000 }
}

fn write(reg: u64, value: u32) {
    // SAFETY: the xAPIC page is identity-mapped by the boot page tables and owned by the hypervisor.
    unsafe { core::ptr::write_volatile((base() + reg) as *mut u32, value) }
}

fn read(reg: u64) -> u32 {
    // SAFETY: as in `write`.
    unsafe { core::ptr::read_volatile((base() + reg) as *const u32) }
}

fn send_ipi(apic_id: u32, command: u32) {
    write(ICR_HIGH, apic_id << 24);
    write(ICR_LOW, command);
    while read(ICR_LOW) & ICR_PENDING != 0 {
        core::hint::spin_loop();
    }
}

/// INIT-SIPI-SIPI: starts CPU `apic_id` in real mode at `vector << 12` (SDM Vol. 3A, 9.4.4.1).
pub fn start_cpu(apic_id: u32, vector: u8) {
    send_ipi(apic_id, ICR_INIT_ASSERT);
    delay_us(10_000);
    for _ in 0..2 {
        send_ipi(apic_id, ICR_STARTUP | u32::from(vector));
        delay_us(200);
    }
}
