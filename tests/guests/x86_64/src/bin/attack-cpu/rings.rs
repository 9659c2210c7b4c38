//! The attacker's own descriptor tables: user segments, a TSS (RSP0 for entries from ring 3 and
//! IST1 for a #DB gate), and an IDT whose few gates all end a trip to ring 3 or record a fault.

use core::arch::{asm, global_asm};
use core::cell::UnsafeCell;

use tandem_guest::cpu::DescriptorPointer;

pub const USER_CS: u64 = 0x20 | 3;
pub const USER_DS: u64 = 0x18 | 3;
const TSS_SELECTOR: u16 = 0x28;
pub const DB: usize = 1;
pub const UD: usize = 6;
pub const AC: usize = 17;
/// The gate ring-3 code uses to come back without a fault.
pub const RETURN: usize = 0x80;
const VECTORS: usize = 0x81;
const STACK: usize = 16 * 1024;
/// RFLAGS.AC: alignment checks at CPL 3 when CR0.AM is set (SDM Vol. 3A, 2.5).
pub const RFLAGS_AC: u64 = 1 << 18;

#[repr(C, align(16))]
struct Stack([u8; STACK]);

/// The 64-bit TSS (SDM Vol. 3A, 8.7): RSP0 at byte 4, IST1 at byte 36, no I/O bitmap.
#[repr(C, align(16))]
struct Tables {
    gdt: [u64; 7],
    tss: [u32; 26],
    idt: [[u64; 2]; VECTORS],
    kernel_stack: Stack,
    ist_stack: Stack,
}

struct Shared(UnsafeCell<Tables>);
// SAFETY: one vCPU; written before the CPU uses the tables.
unsafe impl Sync for Shared {}
static TABLES: Shared = Shared(UnsafeCell::new(Tables {
    gdt: [0; 7],
    tss: [0; 26],
    idt: [[0; 2]; VECTORS],
    kernel_stack: Stack([0; STACK]),
    ist_stack: Stack([0; STACK]),
}));

unsafe extern "C" {
    fn back_from_ud();
    fn back_from_ac();
    fn back_from_return();
    fn debug_handler();
}

fn gate(handler: u64, dpl: u64, ist: u64) -> [u64; 2] {
    let low = (handler & 0xffff)
        | 0x08 << 16
        | ist << 32
        | (0x8e | dpl << 5) << 40
        | ((handler >> 16) & 0xffff) << 48;
    [low, handler >> 32]
}

/// The top of the IST1 stack: where #DB delivery pushes its frame, every time.
fn ist_top() -> u64 {
    // SAFETY: only the address is taken.
    let stack = unsafe { &raw const (*TABLES.0.get()).ist_stack };
    stack as u64 + STACK as u64
}

pub fn debug_handler_address() -> u64 {
    debug_handler as *const () as u64
}

/// Loads the GDT, TSS and IDT, and makes the first 2 MiB (image and stacks) reachable from
/// ring 3; the next 2 MiB stay supervisor-only.
pub fn load() {
    // SAFETY: single vCPU, before the tables are loaded.
    let t = unsafe { &mut *TABLES.0.get() };
    let tss = t.tss.as_ptr() as u64;
    let limit = (core::mem::size_of_val(&t.tss) - 1) as u64;
    t.gdt = [
        0,
        0x00af_9a00_0000_ffff,
        0x00cf_9200_0000_ffff,
        0x00cf_f200_0000_ffff,
        0x00af_fa00_0000_ffff,
        limit | (tss & 0xff_ffff) << 16 | 0x89 << 40 | ((tss >> 24) & 0xff) << 56,
        tss >> 32,
    ];
    let rsp0 = &raw const t.kernel_stack as u64 + STACK as u64;
    t.tss[1] = rsp0 as u32;
    t.tss[2] = (rsp0 >> 32) as u32;
    let ist1 = ist_top();
    t.tss[9] = ist1 as u32;
    t.tss[10] = (ist1 >> 32) as u32;
    t.tss[25] = (core::mem::size_of_val(&t.tss) as u32) << 16;
    t.idt[UD] = gate(back_from_ud as *const () as u64, 0, 0);
    t.idt[AC] = gate(back_from_ac as *const () as u64, 0, 0);
    t.idt[DB] = gate(debug_handler as *const () as u64, 0, 1);
    t.idt[RETURN] = gate(back_from_return as *const () as u64, 3, 0);
    let gdt = DescriptorPointer {
        limit: (core::mem::size_of_val(&t.gdt) - 1) as u16,
        base: t.gdt.as_ptr() as u64,
    };
    let idt = DescriptorPointer {
        limit: (core::mem::size_of_val(&t.idt) - 1) as u16,
        base: t.idt.as_ptr() as u64,
    };
    // User bit on PML4[0], PDPT[0] and PD[0] of the boot tables (GPA 0x1000-0x3fff).
    for entry in [0x1000u64, 0x2000, 0x3000] {
        let v = tandem_guest::cpu::read_u64(entry);
        tandem_guest::cpu::write_u64(entry, v | 1 << 2);
    }
    // SAFETY: the tables are static and keep the kernel selectors 0x08/0x10 the CPU uses; the
    // CR3 reload flushes the old user bits from the TLB.
    unsafe {
        asm!(
            "lgdt [{gdt}]",
            "lidt [{idt}]",
            "ltr {tr:x}",
            "mov {tmp}, cr3",
            "mov cr3, {tmp}",
            gdt = in(reg) &gdt,
            idt = in(reg) &idt,
            tr = in(reg) TSS_SELECTOR,
            tmp = out(reg) _,
            options(nostack)
        )
    }
}

/// Runs `rip` at CPL 3 on `rsp` with `rflags`; returns the vector that brought the CPU back
/// to ring 0 (#UD, #AC, or the return gate).
pub fn enter_user(rip: u64, rsp: u64, rflags: u64) -> u64 {
    let vector: u64;
    // SAFETY: `enter_user_mode` keeps the callee-saved registers and comes back through one of
    // the gates `load` installed, on the stack it saved.
    unsafe {
        asm!("call enter_user_mode", in("rdi") rip, in("rsi") rsp, in("rdx") rflags,
             lateout("rax") vector, clobber_abi("C"))
    }
    vector
}

global_asm!(
    r#"
    .section .text.rings, "ax"
    .global enter_user_mode, back_from_ud, back_from_ac, back_from_return, debug_handler
enter_user_mode:
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    mov [rip + kernel_rsp], rsp
    push {ds}
    push rsi
    push rdx
    push {cs}
    push rdi
    iretq
back_from_ud:
    mov eax, 6
    jmp 2f
back_from_ac:
    mov eax, 17
    jmp 2f
back_from_return:
    mov eax, 0x80
2:  mov rsp, [rip + kernel_rsp]
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    ret
debug_handler:
    iretq

    .section .bss.rings, "aw", @nobits
    .balign 8
kernel_rsp:
    .skip 8
"#,
    ds = const USER_DS,
    cs = const USER_CS,
);
