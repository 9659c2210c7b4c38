//! The first instructions: both loaders Tandem supports enter here in 32-bit protected mode with
//! paging off.
//!
//! - GRUB (multiboot2): `eax` = 0x36D76289, `ebx` = boot information.
//! - QEMU `-kernel` (PVH note): `ebx` = `hvm_start_info`, `eax` = 0.
//!
//! The code clears `.bss`, identity-maps the first 4 GiB with 2 MiB pages, enters long mode and
//! calls `board_main(magic, info)`, which the board's binary provides.

use core::arch::global_asm;

/// The value `eax` holds when GRUB enters through the multiboot2 header.
pub const MULTIBOOT2_MAGIC: u32 = 0x36d7_6289;
/// `hvm_start_info.magic`, read through `ebx` on the PVH path.
pub const PVH_MAGIC: u32 = 0x336e_c578;

/// Size of the bootstrap CPU's stack, which it keeps after boot.
pub const BOOT_STACK_SIZE: usize = 64 * 1024;

global_asm!(
    r#"
    .set MB2_MAGIC, 0xe85250d6
    .section .multiboot2, "a"
    .balign 8
mb2_header:
    .long MB2_MAGIC
    .long 0
    .long mb2_header_end - mb2_header
    .long 0x100000000 - (MB2_MAGIC + (mb2_header_end - mb2_header))
    .balign 8
    .short 0
    .short 0
    .long 8
mb2_header_end:

    .section .note.pvh, "a", @note
    .balign 4
    .long 4
    .long 8
    .long 18
    .asciz "Xen"
    .quad _start

    .section .boot.text, "ax"
    .code32
    .global _start
_start:
    cli
    cld
    mov %eax, %ebp
    mov %ebx, %esi

    /* Clear .bss: it holds the boot page tables and stacks used below. */
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    shr $2, %ecx
    xor %eax, %eax
    rep stosl

    /* PML4[0] -> PDPT; PDPT[0..4] -> four page directories of 2 MiB pages (4 GiB). */
    mov $boot_pdpt, %eax
    or $3, %eax
    mov %eax, boot_pml4
    mov $boot_pd, %eax
    or $3, %eax
    mov $boot_pdpt, %edi
    mov $4, %ecx
1:  mov %eax, (%edi)
    add $4096, %eax
    add $8, %edi
    loop 1b
    mov $boot_pd, %edi
    mov $0x83, %eax
    xor %edx, %edx
    mov $2048, %ecx
2:  mov %eax, (%edi)
    mov %edx, 4(%edi)
    add $0x200000, %eax
    adc $0, %edx
    add $8, %edi
    loop 2b

    /* Long mode: PAE, CR3, EFER.LME, then paging (SDM Vol. 3A, 10.8.5). */
    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4
    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80000001, %eax
    mov %eax, %cr0

    lgdt boot_gdt_ptr
    ljmp $0x08, $long_mode

    .code64
long_mode:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %ax, %ax
    mov %ax, %fs
    mov %ax, %gs
    lea boot_stack_top(%rip), %rsp
    mov %ebp, %edi
    mov %esi, %esi
    call board_main
3:  cli
    hlt
    jmp 3b

    .section .rodata.boot_gdt, "a"
    .balign 16
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff
    .quad 0x00cf92000000ffff
boot_gdt_ptr:
    .short boot_gdt_ptr - boot_gdt - 1
    .quad boot_gdt

    .section .bss.boot, "aw", @nobits
    .balign 4096
    .global boot_pml4
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4 * 4096
    .balign 16
boot_stack:
    .skip {stack}
boot_stack_top:
"#,
    stack = const BOOT_STACK_SIZE,
    options(att_syntax)
);

unsafe extern "C" {
    static boot_pml4: u8;
    static __image_start: u8;
    static __image_end: u8;
}

/// Physical address of the page-table root every CPU uses after boot (identity map of 4 GiB).
pub fn page_table_root() -> u64 {
    core::ptr::addr_of!(boot_pml4) as u64
}

/// The physical range the loaded image occupies (code, data and `.bss`).
pub fn image_range() -> (u64, u64) {
    (
        core::ptr::addr_of!(__image_start) as u64,
        core::ptr::addr_of!(__image_end) as u64,
    )
}
