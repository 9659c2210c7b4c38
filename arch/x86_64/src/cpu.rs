//! Per-CPU descriptor tables: a GDT with a TSS whose IST stack catches NMI, double fault and
//! machine check even on a broken stack, and one shared IDT whose handlers report and stop.

use core::arch::{asm, global_asm};
use core::cell::UnsafeCell;
use core::mem::size_of;

use tandem_core::config::MAX_CPUS;

use crate::{apic, console, machine};

pub const KERNEL_CS: u16 = 0x08;
pub const KERNEL_DS: u16 = 0x10;
pub const KERNEL_TR: u16 = 0x18;
const IST_STACK_SIZE: usize = 16 * 1024;
pub const AP_STACK_SIZE: usize = 64 * 1024;

/// 64-bit task-state segment (SDM Vol. 3A, 9.7).
#[repr(C, packed)]
pub struct Tss {
    reserved0: u32,
    rsp: [u64; 3],
    reserved1: u64,
    ist: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    iomap_base: u16,
}
const _: () = assert!(size_of::<Tss>() == 104);

#[repr(C, align(4096))]
struct CpuLocal {
    gdt: [u64; 5],
    tss: Tss,
    ist_stack: [u8; IST_STACK_SIZE],
    stack: [u8; AP_STACK_SIZE],
}

impl CpuLocal {
    const ZERO: Self = Self {
        gdt: [0; 5],
        tss: Tss {
            reserved0: 0,
            rsp: [0; 3],
            reserved1: 0,
            ist: [0; 7],
            reserved2: 0,
            reserved3: 0,
            iomap_base: 0,
        },
        ist_stack: [0; IST_STACK_SIZE],
        stack: [0; AP_STACK_SIZE],
    };
}

struct PerCpu([UnsafeCell<CpuLocal>; MAX_CPUS]);
// SAFETY: entry `i` is only written by CPU `i` (in `init`) and by the BSP before CPU `i` starts.
unsafe impl Sync for PerCpu {}
static PER_CPU: PerCpu = PerCpu([const { UnsafeCell::new(CpuLocal::ZERO) }; MAX_CPUS]);

#[repr(C)]
#[derive(Clone, Copy)]
struct IdtEntry([u64; 2]);

/// The local APIC's timer wakes an idle CPU with this vector (see `apic::sleep_until`).
pub const WAKE_VECTOR: u8 = 32;
/// The local APIC's spurious-interrupt vector.
pub const SPURIOUS_VECTOR: u8 = 33;
const VECTORS: usize = 34;

struct Idt(UnsafeCell<[IdtEntry; VECTORS]>);
// SAFETY: written once by the BSP in `init_idt` before any other CPU starts; read-only after.
unsafe impl Sync for Idt {}
static IDT: Idt = Idt(UnsafeCell::new([IdtEntry([0; 2]); VECTORS]));

/// Top of the stack CPU `cpu` runs on after the trampoline (APs only; the BSP keeps its boot stack).
pub fn ap_stack_top(cpu: usize) -> u64 {
    // SAFETY: only the address is taken.
    let local = unsafe { &raw const (*PER_CPU.0[cpu].get()).stack };
    local as u64 + AP_STACK_SIZE as u64
}

unsafe extern "C" {
    static exception_stubs: [u64; 32];
    fn wake_stub();
    fn spurious_stub();
}

/// Fills the shared IDT. Runs once on the BSP before any AP starts.
pub fn init_idt() {
    // SAFETY: no CPU has loaded the IDT yet, so nothing reads it concurrently.
    let idt = unsafe { &mut *IDT.0.get() };
    for (vector, entry) in idt.iter_mut().enumerate() {
        let handler = match vector as u8 {
            WAKE_VECTOR => wake_stub as *const () as u64,
            SPURIOUS_VECTOR => spurious_stub as *const () as u64,
            // SAFETY: `exception_stubs` is a table of 32 addresses built by the assembly below.
            _ => unsafe { exception_stubs[vector] },
        };
        // NMI, #DF and #MC switch to IST1 so they run on a known-good stack.
        let ist: u64 = if matches!(vector, 2 | 8 | 18) { 1 } else { 0 };
        let low = (handler & 0xffff)
            | u64::from(KERNEL_CS) << 16
            | ist << 32
            | 0x8e << 40
            | ((handler >> 16) & 0xffff) << 48;
        *entry = IdtEntry([low, handler >> 32]);
    }
}

/// Loads this CPU's GDT, TSS and the shared IDT.
pub fn init(cpu: usize) {
    // SAFETY: entry `cpu` belongs to the calling CPU (see `PerCpu`).
    let local = unsafe { &mut *PER_CPU.0[cpu].get() };
    let ist_top = local.ist_stack.as_ptr() as u64 + IST_STACK_SIZE as u64;
    local.tss.ist[0] = ist_top;
    local.tss.iomap_base = size_of::<Tss>() as u16;
    let tss = &raw const local.tss as u64;
    let limit = (size_of::<Tss>() - 1) as u64;
    local.gdt = [
        0,
        0x00af_9a00_0000_ffff,
        0x00cf_9200_0000_ffff,
        (limit & 0xffff) | (tss & 0xff_ffff) << 16 | 0x89 << 40 | ((tss >> 24) & 0xff) << 56,
        tss >> 32,
    ];
    let gdt_ptr = DescriptorPointer {
        limit: (size_of::<[u64; 5]>() - 1) as u16,
        base: local.gdt.as_ptr() as u64,
    };
    let idt_ptr = DescriptorPointer {
        limit: (size_of::<[IdtEntry; VECTORS]>() - 1) as u16,
        base: IDT.0.get() as u64,
    };
    // SAFETY: the GDT keeps the boot code and data selectors, so reloading the segment registers
    // with them is valid; the TSS descriptor is fresh (not busy); the IDT was filled by `init_idt`.
    unsafe {
        asm!(
            "lgdt [{gdt}]",
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ss, {ds:x}",
            "mov ds, {ds:x}",
            "mov es, {ds:x}",
            "ltr {tr:x}",
            "lidt [{idt}]",
            gdt = in(reg) &gdt_ptr,
            idt = in(reg) &idt_ptr,
            cs = in(reg) u64::from(KERNEL_CS),
            ds = in(reg) KERNEL_DS,
            tr = in(reg) KERNEL_TR,
            tmp = out(reg) _,
        );
    }
}

#[repr(C, packed)]
struct DescriptorPointer {
    limit: u16,
    base: u64,
}

/// The current GDT and IDT bases, for the VMCS host-state area.
pub fn descriptor_bases(cpu: usize) -> (u64, u64, u64) {
    let local = PER_CPU.0[cpu].get();
    // SAFETY: only addresses are taken.
    let (gdt, tss) = unsafe {
        (
            &raw const (*local).gdt as u64,
            &raw const (*local).tss as u64,
        )
    };
    (gdt, tss, IDT.0.get() as u64)
}

/// What the exception stubs push, lowest address first.
#[repr(C)]
pub struct ExceptionFrame {
    gprs: [u64; 15],
    vector: u64,
    error_code: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
}

const NAMES: [&str; 32] = [
    "divide error",
    "debug",
    "NMI",
    "breakpoint",
    "overflow",
    "bound range",
    "invalid opcode",
    "device not available",
    "double fault",
    "coprocessor overrun",
    "invalid TSS",
    "segment not present",
    "stack fault",
    "general protection",
    "page fault",
    "reserved",
    "x87 error",
    "alignment check",
    "machine check",
    "SIMD error",
    "virtualization",
    "control protection",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "hypervisor injection",
    "VMM communication",
    "security",
    "reserved",
];

#[unsafe(no_mangle)]
extern "C" fn exception_entry(frame: &ExceptionFrame) -> ! {
    let cr2: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack, preserves_flags)) };
    let vector = frame.vector as usize;
    console::emergency(format_args!(
        "exception {} ({}) error {:#x} at RIP {:#x} RSP {:#x} CR2 {:#x} on CPU {}",
        vector,
        NAMES.get(vector).copied().unwrap_or("unknown"),
        frame.error_code,
        frame.rip,
        frame.rsp,
        cr2,
        apic::cpu_index()
    ));
    machine::exit(false)
}

#[unsafe(no_mangle)]
extern "C" fn wake_interrupt() {
    apic::end_of_interrupt();
}

// The wake-up interrupt only has to be acknowledged; the spurious vector needs no EOI
// (SDM Vol. 3A, 12.9). The stubs keep every register the interrupted code may be using.
global_asm!(
    r#"
    .section .text.wake, "ax"
    .balign 16
    .global wake_stub, spurious_stub
wake_stub:
    push rax
    push rcx
    push rdx
    push rsi
    push rdi
    push r8
    push r9
    push r10
    push r11
    call wake_interrupt
    pop r11
    pop r10
    pop r9
    pop r8
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rax
    iretq
    .balign 16
spurious_stub:
    iretq
"#
);

// Vectors 8, 10-14, 17, 21, 29 and 30 push an error code; the others get a zero so every frame
// has the same layout.
global_asm!(
    r#"
    .macro STUB vector, has_error
    .balign 16
exception_stub_\vector:
    .if \has_error == 0
    push 0
    .endif
    push \vector
    jmp exception_common
    .endm

    .section .text.exceptions, "ax"
    STUB 0, 0
    STUB 1, 0
    STUB 2, 0
    STUB 3, 0
    STUB 4, 0
    STUB 5, 0
    STUB 6, 0
    STUB 7, 0
    STUB 8, 1
    STUB 9, 0
    STUB 10, 1
    STUB 11, 1
    STUB 12, 1
    STUB 13, 1
    STUB 14, 1
    STUB 15, 0
    STUB 16, 0
    STUB 17, 1
    STUB 18, 0
    STUB 19, 0
    STUB 20, 0
    STUB 21, 1
    STUB 22, 0
    STUB 23, 0
    STUB 24, 0
    STUB 25, 0
    STUB 26, 0
    STUB 27, 0
    STUB 28, 0
    STUB 29, 1
    STUB 30, 1
    STUB 31, 0

exception_common:
    push r15
    push r14
    push r13
    push r12
    push r11
    push r10
    push r9
    push r8
    push rbp
    push rdi
    push rsi
    push rdx
    push rcx
    push rbx
    push rax
    mov rdi, rsp
    and rsp, -16
    call exception_entry
    ud2

    .section .rodata.exception_stubs, "a"
    .balign 8
    .global exception_stubs
exception_stubs:
    .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad exception_stub_\v
    .endr
"#
);
