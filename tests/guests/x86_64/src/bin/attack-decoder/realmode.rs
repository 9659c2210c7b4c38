//! Down to real mode (compatibility mode, paging off, 16-bit protected mode, PE off; SDM Vol. 3A,
//! 10.8.5.4 and 10.9.2), then a denied RDMSR. Its #GP must arrive through the real-mode IVT
//! with FLAGS, CS and IP on the stack and no error code; the handler checks the IP it finds,
//! prints through the UART ports and shuts down with VMCALL.

use core::arch::{asm, global_asm};

use tandem_guest::println;

use crate::tables;

/// Where the blob runs: below 1 MiB, identity-mapped, free (after the boot tables).
const BASE: u64 = 0x8000;

unsafe extern "C" {
    static realmode_start: u8;
    static realmode_end: u8;
}

pub fn run() {
    println!("switching to real mode, then reading a denied MSR");
    let (start, end) = (
        &raw const realmode_start as u64,
        &raw const realmode_end as u64,
    );
    // SAFETY: copies the blob into free guest memory below 1 MiB.
    unsafe {
        core::ptr::copy_nonoverlapping(start as *const u8, BASE as *mut u8, (end - start) as usize)
    };
    tables::load_gdt();
    // SAFETY: the blob never returns; RAX and RDI are cleared so the 32-bit values the blob
    // writes are the whole registers VMCALL passes.
    unsafe {
        asm!("push {cs}", "push {eip}", "retfq",
             cs = in(reg) tables::FLAT_CODE32, eip = in(reg) BASE,
             in("rax") 0u64, in("rdi") 0u64, options(noreturn))
    }
}

// AT&T syntax: Intel syntax takes `label - label` operands for memory references.
global_asm!(
    r#"
    .section .text.realmode, "ax"
    .global realmode_start
    .global realmode_end
    .code32
realmode_start:
    mov %cr0, %eax
    and $0x7fffffff, %eax
    mov %eax, %cr0
    ljmp $0x28, $(pm16 - realmode_start)
    .code16
pm16:
    mov $0x30, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %ax, %fs
    mov %ax, %gs
    mov %cr0, %eax
    and $0xfffffffe, %eax
    mov %eax, %cr0
    ljmp $0x0800, $(rm - realmode_start)
rm:
    mov $0x0800, %ax
    mov %ax, %ds
    mov %ax, %ss
    mov $0x1000, %sp
    lidt (ivt - realmode_start)
    xor %ax, %ax
    mov %ax, %es
    movw $(gp - realmode_start), %es:(13 * 4)
    movw $0x0800, %es:(13 * 4 + 2)
    mov $0xc0010015, %ecx
rd:
    rdmsr
    mov $(no_fault - realmode_start), %si
    mov $97, %edi
    jmp finish
gp:
    pop %ax
    cmp $(rd - realmode_start), %ax
    jne wrong_ip
    mov $(delivered - realmode_start), %si
    xor %edi, %edi
    jmp finish
wrong_ip:
    mov $(wrong - realmode_start), %si
    mov $98, %edi
finish:
    mov $0x3f8, %dx
1:
    lodsb
    test %al, %al
    jz 2f
    out %al, %dx
    jmp 1b
2:
    mov $4, %eax
    vmcall
    hlt
    jmp 2b
ivt:
    .word 0x3ff
    .long 0
delivered:
    .asciz "real-mode #GP delivered without an error code\n"
no_fault:
    .asciz "ERROR: RDMSR of a denied MSR did not fault in real mode\n"
wrong:
    .asciz "ERROR: real-mode #GP frame has the wrong IP (an error code was pushed?)\n"
realmode_end:
    .code64
"#,
    options(att_syntax)
);
