//! The guest's IDT: exceptions either were expected (counted and skipped) or end the guest with a
//! report; vectors 32 and up count timer ticks.

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crate::cpu::DescriptorPointer;
use crate::{Guest, Runtime, hypercall, println};

pub const TIMER_VECTOR: u64 = 32;
const VECTORS: usize = 48;
const NONE: u8 = 0xff;

#[unsafe(no_mangle)]
static GUEST_TICKS: AtomicU64 = AtomicU64::new(0);
static EXPECTED_VECTOR: AtomicU8 = AtomicU8::new(NONE);
static SKIP_BYTES: AtomicU8 = AtomicU8::new(0);
static FAULTS: AtomicU64 = AtomicU64::new(0);

unsafe extern "C" {
    static guest_vectors: [u64; VECTORS];
}

#[repr(C)]
struct Frame {
    vector: u64,
    error: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
}

struct Idt(core::cell::UnsafeCell<[[u64; 2]; VECTORS]>);
// SAFETY: written once in `load_idt` before interrupts are ever enabled; read by the CPU only.
unsafe impl Sync for Idt {}
static IDT: Idt = Idt(core::cell::UnsafeCell::new([[0; 2]; VECTORS]));

pub fn load_idt() {
    // SAFETY: single-threaded set-up before any interrupt can arrive.
    let idt = unsafe { &mut *IDT.0.get() };
    for (i, entry) in idt.iter_mut().enumerate() {
        // SAFETY: `guest_vectors` is the address table built below.
        let handler = unsafe { guest_vectors[i] };
        entry[0] = (handler & 0xffff) | 0x08 << 16 | 0x8e << 40 | ((handler >> 16) & 0xffff) << 48;
        entry[1] = handler >> 32;
    }
    let ptr = DescriptorPointer {
        limit: (core::mem::size_of::<[[u64; 2]; VECTORS]>() - 1) as u16,
        base: IDT.0.get() as u64,
    };
    // SAFETY: the table is filled and lives forever.
    unsafe { asm!("lidt [{}]", in(reg) &ptr, options(nostack)) }
}

/// The next exception with `vector` is expected: count it and resume `skip` bytes further.
pub fn expect_fault(vector: u8, skip: u8) {
    SKIP_BYTES.store(skip, Ordering::SeqCst);
    EXPECTED_VECTOR.store(vector, Ordering::SeqCst);
}

pub fn faults_taken() -> u64 {
    FAULTS.load(Ordering::SeqCst)
}

pub fn ticks() -> u64 {
    GUEST_TICKS.load(Ordering::SeqCst)
}

/// Sleeps until the virtual timer fires `ns` from now, halting in between.
pub fn sleep_ns(ns: u64) {
    let start = ticks();
    let (status, _) = Guest::timer_set(ns, TIMER_VECTOR);
    assert_eq!(status, 0, "TIMER_SET refused");
    loop {
        // SAFETY: `sti; hlt` is atomic with respect to interrupts (STI shadow), so the tick that
        // wakes us cannot slip in between the check and the halt.
        unsafe { asm!("cli", options(nomem, nostack)) };
        if ticks() != start {
            break;
        }
        // SAFETY: as above; the IDT handles the timer vector.
        unsafe { asm!("sti", "hlt", options(nomem, nostack)) };
    }
}

/// Sleeps like [`sleep_ns`], but spins with interrupts enabled until the timer's handler has run,
/// PAUSE in the loop, as a guest waiting on a flag its interrupt handler sets does.
pub fn spin_ns(ns: u64) {
    let start = ticks();
    let (status, _) = Guest::timer_set(ns, TIMER_VECTOR);
    assert_eq!(status, 0, "TIMER_SET refused");
    // SAFETY: the IDT handles the timer vector; interrupts are masked again before returning.
    unsafe { asm!("sti", options(nomem, nostack)) };
    while ticks() == start {
        core::hint::spin_loop();
    }
    // SAFETY: as above.
    unsafe { asm!("cli", options(nomem, nostack)) };
}

#[unsafe(no_mangle)]
extern "C" fn guest_exception(frame: &mut Frame) {
    if EXPECTED_VECTOR.load(Ordering::SeqCst) == frame.vector as u8 {
        EXPECTED_VECTOR.store(NONE, Ordering::SeqCst);
        FAULTS.fetch_add(1, Ordering::SeqCst);
        frame.rip += u64::from(SKIP_BYTES.load(Ordering::SeqCst));
        return;
    }
    println!(
        "unexpected exception {} (error {:#x}) at RIP {:#x}",
        frame.vector, frame.error, frame.rip
    );
    hypercall::shutdown(0xe0 + frame.vector)
}

global_asm!(
    r#"
    .macro EXC vector, has_error
    .balign 16
guest_vector_\vector:
    .if \has_error == 0
    push 0
    .endif
    push \vector
    jmp guest_exception_common
    .endm

    .macro TICK vector
    .balign 16
guest_vector_\vector:
    lock inc qword ptr [rip + GUEST_TICKS]
    iretq
    .endm

    .section .text.vectors, "ax"
    .irp v, 0,1,2,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31
    EXC \v, 0
    .endr
    .irp v, 8,10,11,12,13,14,17,21,29,30
    EXC \v, 1
    .endr
    .irp v, 32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47
    TICK \v
    .endr

guest_exception_common:
    push rbp
    push rax
    push rcx
    push rdx
    push rsi
    push rdi
    push r8
    push r9
    push r10
    push r11
    lea rdi, [rsp + 80]
    mov rbp, rsp
    and rsp, -16
    call guest_exception
    mov rsp, rbp
    pop r11
    pop r10
    pop r9
    pop r8
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rax
    pop rbp
    add rsp, 16
    iretq

    .section .rodata.vectors, "a"
    .balign 8
guest_vectors:
    .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47
    .quad guest_vector_\v
    .endr
"#
);
