//! The guest's EL1 exception vectors: synchronous exceptions either were expected (counted and
//! skipped) or end the guest with a report; IRQs count virtual timer ticks.

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::cpu::{counter_frequency, virtual_count};
use crate::{gic, hypercall, println};

static TICKS: AtomicU64 = AtomicU64::new(0);
static EXPECTING: AtomicBool = AtomicBool::new(false);
static FAULTS: AtomicU64 = AtomicU64::new(0);

/// The next synchronous exception is expected: count it and resume at the next instruction.
pub fn expect_fault() {
    EXPECTING.store(true, Ordering::SeqCst);
}

pub fn faults_taken() -> u64 {
    FAULTS.load(Ordering::SeqCst)
}

pub fn ticks() -> u64 {
    TICKS.load(Ordering::SeqCst)
}

/// Sleeps until the virtual timer fires `ns` from now: arm CNTV, then WFI with IRQs masked (WFI
/// still wakes on a pending interrupt), unmask to take it, and repeat until it was the timer.
pub fn sleep_ns(ns: u64) {
    let start = ticks();
    let deadline = virtual_count()
        + (u128::from(ns) * u128::from(counter_frequency())).div_ceil(1_000_000_000) as u64;
    // SAFETY: the guest's own virtual timer: compare value, then enabled and unmasked.
    unsafe {
        asm!("msr cntv_cval_el0, {}", in(reg) deadline, options(nomem, nostack));
        asm!("msr cntv_ctl_el0, {}", in(reg) 1u64, options(nomem, nostack));
        asm!("isb", options(nomem, nostack));
    }
    while ticks() == start {
        // SAFETY: masking, waiting and unmasking IRQs only changes when the handler runs.
        unsafe {
            asm!(
                "msr daifset, #2",
                "wfi",
                "msr daifclr, #2",
                "isb",
                options(nomem, nostack)
            )
        };
    }
}

#[repr(C)]
struct Frame {
    esr: u64,
    elr: u64,
}

#[unsafe(no_mangle)]
extern "C" fn guest_sync(frame: &mut Frame) {
    if EXPECTING.swap(false, Ordering::SeqCst) {
        FAULTS.fetch_add(1, Ordering::SeqCst);
        frame.elr += 4;
        return;
    }
    println!(
        "unexpected exception ESR {:#x} at PC {:#x}",
        frame.esr, frame.elr
    );
    hypercall::shutdown(0xe0)
}

#[unsafe(no_mangle)]
extern "C" fn guest_irq() {
    let intid = gic::acknowledge();
    if intid == gic::VTIMER {
        // Disabling the timer drops its interrupt line before the end of interrupt.
        // SAFETY: the guest's own virtual timer.
        unsafe { asm!("msr cntv_ctl_el0, xzr", options(nomem, nostack)) };
        TICKS.fetch_add(1, Ordering::SeqCst);
    }
    if intid < 1020 {
        gic::end(intid);
    }
}

global_asm!(
    r#"
    .macro SAVE
    sub sp, sp, #272
    stp x0, x1, [sp, #16]
    stp x2, x3, [sp, #32]
    stp x4, x5, [sp, #48]
    stp x6, x7, [sp, #64]
    stp x8, x9, [sp, #80]
    stp x10, x11, [sp, #96]
    stp x12, x13, [sp, #112]
    stp x14, x15, [sp, #128]
    stp x16, x17, [sp, #144]
    stp x18, x30, [sp, #160]
    mrs x0, esr_el1
    mrs x1, elr_el1
    stp x0, x1, [sp]
    .endm

    .macro RESTORE
    ldp x0, x1, [sp]
    msr elr_el1, x1
    ldp x0, x1, [sp, #16]
    ldp x2, x3, [sp, #32]
    ldp x4, x5, [sp, #48]
    ldp x6, x7, [sp, #64]
    ldp x8, x9, [sp, #80]
    ldp x10, x11, [sp, #96]
    ldp x12, x13, [sp, #112]
    ldp x14, x15, [sp, #128]
    ldp x16, x17, [sp, #144]
    ldp x18, x30, [sp, #160]
    add sp, sp, #272
    eret
    .endm

    .section .text.vectors, "ax"
    .balign 2048
guest_vectors:
    .global guest_vectors
    .balign 128
    b guest_unexpected
    .balign 128
    b guest_unexpected
    .balign 128
    b guest_unexpected
    .balign 128
    b guest_unexpected
    /* Current EL with SP_ELx: the guest runs here. */
    .balign 128
    b guest_sync_entry
    .balign 128
    b guest_irq_entry
    .balign 128
    b guest_unexpected
    .balign 128
    b guest_unexpected

guest_sync_entry:
    SAVE
    mov x0, sp
    bl guest_sync
    RESTORE

guest_irq_entry:
    SAVE
    bl guest_irq
    RESTORE

guest_unexpected:
    SAVE
    mov x0, sp
    bl guest_sync
    RESTORE
"#
);
