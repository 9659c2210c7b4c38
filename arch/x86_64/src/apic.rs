//! The local APIC, used only to start the other CPUs (xAPIC MMIO, SDM Vol. 3A, 12.6).

use core::arch::asm;

use crate::cpu::{SPURIOUS_VECTOR, WAKE_VECTOR};
use crate::io::{cpuid, rdmsr, rdtsc, wrmsr};
use crate::time::delay_us;

const IA32_APIC_BASE: u32 = 0x1b;
const IA32_TSC_DEADLINE: u32 = 0x6e0;
const EOI: u64 = 0x0b0;
const SVR: u64 = 0x0f0;
const LVT_TIMER: u64 = 0x320;
const SVR_ENABLE: u32 = 1 << 8;
const LVT_TSC_DEADLINE: u32 = 0b10 << 17;
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

/// Whether this CPU's APIC timer has TSC-deadline mode (CPUID.01H:ECX[24]).
fn has_tsc_deadline() -> bool {
    cpuid(1, 0)[2] & (1 << 24) != 0
}

/// Software-enables this CPU's local APIC with its timer in TSC-deadline mode, disarmed, so
/// [`sleep_until`] can halt instead of spinning. Returns whether that is available.
pub fn init_wakeup() -> bool {
    if !has_tsc_deadline() {
        return false;
    }
    write(SVR, SVR_ENABLE | u32::from(SPURIOUS_VECTOR));
    write(LVT_TIMER, LVT_TSC_DEADLINE | u32::from(WAKE_VECTOR));
    // SAFETY: the TSC-deadline MSR exists (checked above); 0 disarms the timer.
    unsafe { wrmsr(IA32_TSC_DEADLINE, 0) };
    true
}

pub fn end_of_interrupt() {
    write(EOI, 0);
}

/// Halts this CPU until the TSC reaches `deadline` (SDM Vol. 3A, 12.5.4.1). Interrupts are
/// enabled only across `hlt`, and any wake-up still pending afterwards is taken before
/// returning, so it can never turn into an external-interrupt exit of the next guest entry.
pub fn sleep_until(deadline: u64) {
    // SAFETY: `init_wakeup` found the MSR; the wake vector's handler only acknowledges.
    unsafe { wrmsr(IA32_TSC_DEADLINE, deadline.max(1)) };
    while rdtsc() < deadline {
        // SAFETY: `sti; hlt` cannot lose the wake-up between the two instructions (STI
        // shadow); the IDT handles the wake and spurious vectors.
        unsafe { asm!("sti", "hlt", "cli", options(nomem, nostack)) };
    }
    // SAFETY: disarming is harmless.
    unsafe { wrmsr(IA32_TSC_DEADLINE, 0) };
    take_pending_interrupts();
}

/// Takes any interrupt pending at this CPU's APIC. A guest exits on external interrupts without
/// acknowledging them, and the hypervisor runs with interrupts off, so one left pending would
/// make every following VM entry exit at once.
pub fn take_pending_interrupts() {
    // SAFETY: the `sti; nop` window lets a pending interrupt through to the IDT, whose wake and
    // spurious handlers only acknowledge it.
    unsafe { asm!("sti", "nop", "cli", options(nomem, nostack)) };
}
