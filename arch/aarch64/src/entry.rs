//! The EL2 vector table and the world switch.
//!
//! `guest_enter` saves the hypervisor's callee-saved registers and the guest-register pointer on
//! the current CPU's stack, loads the guest's general registers, ELR_EL2 and SPSR_EL2, and ERETs.
//! An exception from the guest (lower EL, AArch64) lands on the same stack (SP_EL2), stores the
//! guest's registers back (the PC of an HVC moved back to the HVC itself, so the saved PC always
//! names the instruction that trapped) and returns the exception kind to `guest_enter`'s caller.
//! EL1 system registers are never switched: each vCPU owns its physical CPU. The hypervisor uses
//! no FP/SIMD (softfloat target), so the guest's FP registers are left as they are.
//!
//! An exception taken from EL2 itself is a hypervisor failure and goes to `hypervisor_fault`
//! (`fault`) on this CPU's recovery stack, whatever the stack pointer was (ReHype's FixSP,
//! recovery.md 6.1), except the fault injection's single-steps (`step`), which return; a FIQ is the recovery's stop request (`stop`) or the watchdog's tick
//! (`watchdog`), taken wherever EL2 code runs with PSTATE.F clear: the world switch clears it
//! once the guest's state is saved.

use core::arch::global_asm;

/// What brought the CPU back from the guest (the vector's index; 2 is FIQ and 3 SError).
pub const KIND_SYNC: u64 = 0;
pub const KIND_IRQ: u64 = 1;
/// A FIQ ended the guest's run: a stop request or a watchdog tick, taken (or found stale) as
/// soon as PSTATE.F is clear again.
pub const KIND_FIQ: u64 = 2;

/// Bytes of each CPU's recovery stack, where a failure's handler starts: enough for the
/// recovery's first steps and the failure report, which move to the CPU's own stack afterwards
/// (`boot::on_fresh_stack`).
const RECOVERY_STACK_SIZE: usize = 16 * 1024;

/// The guest's general registers, PC (ELR_EL2) and PSTATE (SPSR_EL2) while it is not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct GuestRegs {
    pub x: [u64; 31],
    pub pc: u64,
    pub pstate: u64,
}

// The assembly below addresses the fields by offset.
const _: () = assert!(core::mem::offset_of!(GuestRegs, pc) == 248);
const _: () = assert!(core::mem::offset_of!(GuestRegs, pstate) == 256);

impl GuestRegs {
    pub const fn zeroed() -> Self {
        Self {
            x: [0; 31],
            pc: 0,
            pstate: 0,
        }
    }
}

global_asm!(
    r#"
    .macro VENTRY label
    .balign 128
    b \label
    .endm

    .macro GUEST kind
    .balign 128
    stp x0, x1, [sp, #-16]!
    mov x0, #\kind
    b guest_exit
    .endm

    .macro FAULT kind
    .balign 128
    mov x0, #\kind
    b hypervisor_fault_entry
    .endm

    .macro STOP
    .balign 128
    b stop_entry
    .endm

    /* SP = the top of this CPU's recovery stack (MPIDR_EL1.Aff0 numbers the CPUs, as in boot.rs);
       clobbers x9-x11. */
    .macro RECOVERY_SP
    mrs x9, mpidr_el1
    and x9, x9, #0xff
    add x9, x9, #1
    adrp x10, recovery_stacks
    add x10, x10, :lo12:recovery_stacks
    mov x11, #{recovery_stack}
    madd x10, x9, x11, x10
    mov sp, x10
    .endm

    .section .text.vectors, "ax"
    .balign 2048
    .global el2_vectors
el2_vectors:
    /* Current EL with SP_EL0: never used. */
    FAULT 0
    FAULT 1
    FAULT 2
    FAULT 3
    /* Current EL with SP_EL2: a failure of the hypervisor, an injection's single-step, or the
       recovery's stop request. */
    VENTRY el2_sync
    FAULT 1
    STOP
    FAULT 3
    /* Lower EL, AArch64: the guest. */
    GUEST 0
    GUEST 1
    GUEST 2
    GUEST 3
    /* Lower EL, AArch32: guests cannot enter AArch32 (HCR_EL2.RW = 1 and no AArch32 EL1). */
    FAULT 0
    FAULT 1
    FAULT 2
    FAULT 3

    /* A synchronous exception at EL2: a software step or the BRK that starts stepping goes to
       `step_taken` and returns; anything else is a failure. The class is found with x0 kept in
       TPIDR_EL2 (as `stop_entry` does), touching no stack: a failure may have left SP bad. */
el2_sync:
    msr tpidr_el2, x0
    mrs x0, esr_el2
    lsr x0, x0, #{ec_shift}
    cmp x0, #{ec_step}
    b.eq 1f
    cmp x0, #{ec_brk}
    b.ne 2f
    mrs x0, esr_el2
    and x0, x0, #0xffff
    cmp x0, #{brk_step}
    b.eq 1f
2:  mov x0, #0
    b hypervisor_fault_entry
    /* The interrupted context into a `StepFrame` on its own stack, SP as it was included. */
1:  mrs x0, tpidr_el2
    sub sp, sp, #272
    stp x0, x1, [sp, #0]
    stp x2, x3, [sp, #16]
    stp x4, x5, [sp, #32]
    stp x6, x7, [sp, #48]
    stp x8, x9, [sp, #64]
    stp x10, x11, [sp, #80]
    stp x12, x13, [sp, #96]
    stp x14, x15, [sp, #112]
    stp x16, x17, [sp, #128]
    stp x18, x19, [sp, #144]
    stp x20, x21, [sp, #160]
    stp x22, x23, [sp, #176]
    stp x24, x25, [sp, #192]
    stp x26, x27, [sp, #208]
    stp x28, x29, [sp, #224]
    add x0, sp, #272
    stp x30, x0, [sp, #240]
    mrs x0, elr_el2
    mrs x1, spsr_el2
    stp x0, x1, [sp, #256]
    mov x0, sp
    mrs x1, esr_el2
    bl step_taken
    ldp x0, x1, [sp, #256]
    msr elr_el2, x0
    msr spsr_el2, x1
    ldp x2, x3, [sp, #16]
    ldp x4, x5, [sp, #32]
    ldp x6, x7, [sp, #48]
    ldp x8, x9, [sp, #64]
    ldp x10, x11, [sp, #80]
    ldp x12, x13, [sp, #96]
    ldp x14, x15, [sp, #112]
    ldp x16, x17, [sp, #128]
    ldp x18, x19, [sp, #144]
    ldp x20, x21, [sp, #160]
    ldp x22, x23, [sp, #176]
    ldp x24, x25, [sp, #192]
    ldp x26, x27, [sp, #208]
    ldp x28, x29, [sp, #224]
    /* The frame's SP (which the register model may have flipped) last: x1 holds it while x0
       passes through TPIDR_EL2, all read before SP leaves the frame. */
    ldp x30, x1, [sp, #240]
    ldr x0, [sp, #0]
    msr tpidr_el2, x0
    ldr x0, [sp, #8]
    mov sp, x1
    mov x1, x0
    mrs x0, tpidr_el2
    eret

hypervisor_fault_entry:
    RECOVERY_SP
    mrs x1, esr_el2
    mrs x2, elr_el2
    mrs x3, far_el2
    bl hypervisor_fault
6:  wfe
    b 6b

    /* A FIQ at EL2: with a stop pending, the follower path on the recovery stack; otherwise
       `group0_taken` acknowledges it (a stale stop request, ended there, or the watchdog's
       tick) before the CPU goes on where it was (x0 kept in TPIDR_EL2, which the hypervisor
       uses for nothing else; ERET restores the flags from SPSR_EL2). The acknowledge is an
       access to the GIC, a system register or a memory-mapped one by the GIC's version, so it
       runs in Rust on the interrupted code's stack (EL2 code always has a valid one; an SP
       gone bad faults into `hypervisor_fault`, which needs none), with the registers a call
       may clobber kept below it. ELR_EL2 and SPSR_EL2 need no saving: the handler takes no
       exception it returns from. */
stop_entry:
    msr tpidr_el2, x0
    adrp x0, STOP_PENDING
    ldr w0, [x0, :lo12:STOP_PENDING]
    cbnz w0, 8f
    sub sp, sp, #160
    stp x1, x2, [sp, #0]
    stp x3, x4, [sp, #16]
    stp x5, x6, [sp, #32]
    stp x7, x8, [sp, #48]
    stp x9, x10, [sp, #64]
    stp x11, x12, [sp, #80]
    stp x13, x14, [sp, #96]
    stp x15, x16, [sp, #112]
    stp x17, x18, [sp, #128]
    str x30, [sp, #144]
    bl group0_taken
    ldp x1, x2, [sp, #0]
    ldp x3, x4, [sp, #16]
    ldp x5, x6, [sp, #32]
    ldp x7, x8, [sp, #48]
    ldp x9, x10, [sp, #64]
    ldp x11, x12, [sp, #80]
    ldp x13, x14, [sp, #96]
    ldp x15, x16, [sp, #112]
    ldp x17, x18, [sp, #128]
    ldr x30, [sp, #144]
    add sp, sp, #160
    mrs x0, tpidr_el2
    eret
8:  RECOVERY_SP
    bl stop_taken
    b 6b

    .section .bss.recovery, "aw", @nobits
    .balign 16
recovery_stacks:
    .skip {recovery_stack} * {cpus}

    .text
    .global guest_enter
guest_enter:
    /* No FIQ between here and the ERET: a stale stop request taken after ELR_EL2 and SPSR_EL2
       are set would overwrite them; one pending is taken from the guest instead. */
    msr daifset, #1
    stp x29, x30, [sp, #-112]!
    stp x19, x20, [sp, #16]
    stp x21, x22, [sp, #32]
    stp x23, x24, [sp, #48]
    stp x25, x26, [sp, #64]
    stp x27, x28, [sp, #80]
    str x0, [sp, #96]
    ldp x1, x2, [x0, #248]
    msr elr_el2, x1
    msr spsr_el2, x2
    ldp x2, x3, [x0, #16]
    ldp x4, x5, [x0, #32]
    ldp x6, x7, [x0, #48]
    ldp x8, x9, [x0, #64]
    ldp x10, x11, [x0, #80]
    ldp x12, x13, [x0, #96]
    ldp x14, x15, [x0, #112]
    ldp x16, x17, [x0, #128]
    ldp x18, x19, [x0, #144]
    ldp x20, x21, [x0, #160]
    ldp x22, x23, [x0, #176]
    ldp x24, x25, [x0, #192]
    ldp x26, x27, [x0, #208]
    ldp x28, x29, [x0, #224]
    ldr x30, [x0, #240]
    ldp x0, x1, [x0]
    eret

guest_exit:
    ldr x1, [sp, #16 + 96]
    stp x2, x3, [x1, #16]
    stp x4, x5, [x1, #32]
    stp x6, x7, [x1, #48]
    stp x8, x9, [x1, #64]
    stp x10, x11, [x1, #80]
    stp x12, x13, [x1, #96]
    stp x14, x15, [x1, #112]
    stp x16, x17, [x1, #128]
    stp x18, x19, [x1, #144]
    stp x20, x21, [x1, #160]
    stp x22, x23, [x1, #176]
    stp x24, x25, [x1, #192]
    stp x26, x27, [x1, #208]
    stp x28, x29, [x1, #224]
    str x30, [x1, #240]
    ldp x2, x3, [sp], #16
    stp x2, x3, [x1]
    mrs x2, elr_el2
    /* An HVC's preferred return address is the next instruction (Arm ARM D1.10.3); every other
       trap's is the trapping one. The saved PC is always the trapping instruction, so a stop
       before the exit is handled, or a recovery rolling it back, runs the HVC again. */
    cbnz x0, 7f
    mrs x3, esr_el2
    lsr x3, x3, #{ec_shift}
    cmp x3, #{ec_hvc64}
    b.ne 7f
    sub x2, x2, #4
7:  mrs x3, spsr_el2
    stp x2, x3, [x1, #248]
    /* The guest's state is saved: a stop request may come in. */
    msr daifclr, #1
    ldp x19, x20, [sp, #16]
    ldp x21, x22, [sp, #32]
    ldp x23, x24, [sp, #48]
    ldp x25, x26, [sp, #64]
    ldp x27, x28, [sp, #80]
    ldp x29, x30, [sp], #112
    ret
"#,
    ec_shift = const 26,
    ec_hvc64 = const 0x16,
    ec_step = const crate::step::EC_SOFTWARE_STEP_EL2,
    ec_brk = const crate::step::EC_BRK,
    brk_step = const crate::step::BRK_STEP,
    recovery_stack = const RECOVERY_STACK_SIZE,
    cpus = const tandem_core::config::MAX_CPUS,
);

unsafe extern "C" {
    /// Runs the guest until its next exception to EL2 and returns its kind (`KIND_*`).
    ///
    /// # Safety
    /// EL2 is set up for a guest on this CPU (HCR_EL2, stage 2, vectors), `regs` stays valid for the
    /// call, and `regs.pstate` names EL1 or EL0 in AArch64 state.
    pub fn guest_enter(regs: *mut GuestRegs) -> u64;
}

unsafe extern "C" {
    static el2_vectors: u8;
}

/// The vector table's address, for VBAR_EL2.
pub fn vectors() -> u64 {
    core::ptr::addr_of!(el2_vectors) as u64
}
