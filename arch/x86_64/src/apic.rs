//! This CPU's local APIC (xAPIC MMIO, SDM Vol. 3A, chapter 12): starting the other CPUs with
//! INIT-SIPI-SIPI, the timer in TSC-deadline mode that wakes an idle CPU, and taking interrupts
//! a guest exit left pending.

use embedded_hal::delay::DelayNs;
use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadWrite, WriteOnly};
use x86_64::instructions::interrupts;
use x86_64::registers::model_specific::{ApicBase, Msr};

use crate::io::{cpuid, rdtsc};

/// The local APIC's timer wakes an idle CPU with this vector (see [`sleep_until`]).
pub const WAKE_VECTOR: u8 = 32;
/// The local APIC's spurious-interrupt vector.
pub const SPURIOUS_VECTOR: u8 = 33;

/// IA32_TSC_DEADLINE (SDM Vol. 3A, 12.5.4.1): the TSC value at which the timer fires; 0 disarms.
const IA32_TSC_DEADLINE: u32 = 0x6e0;

register_bitfields! {u32,
    /// Spurious-interrupt vector register (SDM Vol. 3A, Figure 12-23).
    SVR [
        VECTOR OFFSET(0) NUMBITS(8) [],
        APIC_ENABLE OFFSET(8) NUMBITS(1) [],
    ],
    /// Interrupt command register, low half (SDM Vol. 3A, Figure 12-12).
    ICR_LOW [
        VECTOR OFFSET(0) NUMBITS(8) [],
        DELIVERY_MODE OFFSET(8) NUMBITS(3) [
            Nmi = 0b100,
            Init = 0b101,
            StartUp = 0b110,
        ],
        DELIVERY_STATUS OFFSET(12) NUMBITS(1) [
            Idle = 0,
            SendPending = 1,
        ],
        LEVEL OFFSET(14) NUMBITS(1) [
            Assert = 1,
        ],
    ],
    /// Interrupt command register, high half: the destination's APIC ID.
    ICR_HIGH [
        DESTINATION OFFSET(24) NUMBITS(8) [],
    ],
    /// LVT timer register (SDM Vol. 3A, Figure 12-8).
    LVT_TIMER [
        VECTOR OFFSET(0) NUMBITS(8) [],
        MODE OFFSET(17) NUMBITS(2) [
            TscDeadline = 0b10,
        ],
    ],
}

register_structs! {
    /// The xAPIC registers Tandem uses (SDM Vol. 3A, Table 12-1). Each sits at a 16-byte
    /// boundary; only its first 32 bits exist.
    LocalApic {
        (0x000 => _reserved0),
        (0x0b0 => eoi: WriteOnly<u32>),
        (0x0b4 => _reserved1),
        (0x0f0 => svr: ReadWrite<u32, SVR::Register>),
        (0x0f4 => _reserved2),
        (0x300 => icr_low: ReadWrite<u32, ICR_LOW::Register>),
        (0x304 => _reserved3),
        (0x310 => icr_high: ReadWrite<u32, ICR_HIGH::Register>),
        (0x314 => _reserved4),
        (0x320 => lvt_timer: ReadWrite<u32, LVT_TIMER::Register>),
        (0x324 => _reserved5),
        (0x400 => @END),
    }
}

/// This CPU's initial APIC ID, which Tandem uses as its CPU index.
pub fn cpu_index() -> usize {
    (cpuid(1, 0)[1] >> 24) as usize
}

fn registers() -> &'static LocalApic {
    let (frame, _) = ApicBase::read();
    // SAFETY: IA32_APIC_BASE names this CPU's xAPIC page, which the boot page tables
    // identity-map (it lies below 4 GiB) and only the hypervisor touches.
    unsafe { &*(frame.start_address().as_u64() as *const LocalApic) }
}

fn set_tsc_deadline(tsc: u64) {
    // SAFETY: only called after `init_wakeup` found the TSC-deadline timer; the wake vector's
    // handler only acknowledges.
    unsafe { Msr::new(IA32_TSC_DEADLINE).write(tsc) }
}

fn send_ipi(apic_id: u32, command: tock_registers::fields::FieldValue<u32, ICR_LOW::Register>) {
    let apic = registers();
    // Writing the low half sends the IPI, so the destination goes first.
    apic.icr_high.write(ICR_HIGH::DESTINATION.val(apic_id));
    apic.icr_low.write(command + ICR_LOW::LEVEL::Assert);
    while apic
        .icr_low
        .matches_all(ICR_LOW::DELIVERY_STATUS::SendPending)
    {
        core::hint::spin_loop();
    }
}

/// INIT-SIPI-SIPI: starts CPU `apic_id` in real mode at `vector << 12` (SDM Vol. 3A, 9.4.4.1).
pub fn start_cpu(apic_id: u32, vector: u8, delay: &mut impl DelayNs) {
    send_ipi(apic_id, ICR_LOW::DELIVERY_MODE::Init);
    delay.delay_us(10_000);
    for _ in 0..2 {
        send_ipi(
            apic_id,
            ICR_LOW::DELIVERY_MODE::StartUp + ICR_LOW::VECTOR.val(vector.into()),
        );
        delay.delay_us(200);
    }
}

/// Sends an NMI to CPU `apic_id` (the vector field is ignored for NMIs, SDM Vol. 3A, 12.6.1).
pub fn send_nmi(apic_id: u32) {
    send_ipi(apic_id, ICR_LOW::DELIVERY_MODE::Nmi);
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
    let apic = registers();
    apic.svr
        .write(SVR::APIC_ENABLE::SET + SVR::VECTOR.val(SPURIOUS_VECTOR.into()));
    apic.lvt_timer
        .write(LVT_TIMER::MODE::TscDeadline + LVT_TIMER::VECTOR.val(WAKE_VECTOR.into()));
    set_tsc_deadline(0);
    true
}

pub fn end_of_interrupt() {
    registers().eoi.set(0);
}

/// Halts this CPU until the TSC reaches `deadline` (SDM Vol. 3A, 12.5.4.1). Interrupts are
/// enabled only across `hlt`, and any wake-up still pending afterwards is taken before
/// returning, so it can never turn into an external-interrupt exit of the next guest entry.
pub fn sleep_until(deadline: u64) {
    set_tsc_deadline(deadline.max(1));
    while rdtsc() < deadline {
        // `sti; hlt` cannot lose the wake-up between the two instructions (STI shadow); the IDT
        // handles the wake and spurious vectors.
        interrupts::enable_and_hlt();
        interrupts::disable();
    }
    set_tsc_deadline(0);
    take_pending_interrupts();
}

/// Takes any interrupt pending at this CPU's APIC. A guest exits on external interrupts without
/// acknowledging them, and the hypervisor runs with interrupts off, so one left pending would
/// make every following VM entry exit at once.
pub fn take_pending_interrupts() {
    // `enable` is `sti; nop`: the window lets a pending interrupt through to the IDT, whose wake
    // and spurious handlers only acknowledge it.
    interrupts::enable();
    interrupts::disable();
}
