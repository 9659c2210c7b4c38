//! The guest's EL1 exception vectors: synchronous exceptions either were expected (counted and
//! skipped) or end the guest with a report; IRQs go to [`crate::irq`].

use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::{hypercall, println};

static EXPECTING: AtomicBool = AtomicBool::new(false);
static FAULTS: AtomicU64 = AtomicU64::new(0);
/// ESR_EL1 and FAR_EL1 of the last expected fault.
static LAST_ESR: AtomicU64 = AtomicU64::new(0);
static LAST_FAR: AtomicU64 = AtomicU64::new(0);

/// The next synchronous exception is expected: count it and resume at the next instruction.
pub fn expect_fault() {
    EXPECTING.store(true, Ordering::SeqCst);
}

pub fn faults_taken() -> u64 {
    FAULTS.load(Ordering::SeqCst)
}

/// The syndrome (ESR_EL1) and fault address (FAR_EL1) of the last expected fault.
pub fn last_fault() -> (u64, u64) {
    (
        LAST_ESR.load(Ordering::SeqCst),
        LAST_FAR.load(Ordering::SeqCst),
    )
}

#[repr(C)]
struct Frame {
    esr: u64,
    elr: u64,
}

#[unsafe(no_mangle)]
extern "C" fn guest_sync(frame: &mut Frame) {
    if EXPECTING.swap(false, Ordering::SeqCst) {
        let far: u64;
        // SAFETY: reads the fault address register of the exception being handled.
        unsafe { core::arch::asm!("mrs {}, far_el1", out(reg) far, options(nomem, nostack)) };
        LAST_ESR.store(frame.esr, Ordering::SeqCst);
        LAST_FAR.store(far, Ordering::SeqCst);
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
