//! Starting the application processors: a real-mode trampoline copied below 1 MiB takes each
//! one to long mode on the bootstrap CPU's page tables and into `ap_entry`.

use core::arch::global_asm;

use tandem_hw::clock::ClockDelay;

use crate::clock::PcClock;
use crate::{apic, boot, cpu};

/// Where the trampoline runs; the SIPI vector is this address >> 12.
const TRAMPOLINE: u64 = boot::AP_TRAMPOLINE;

global_asm!(
    r#"
    .section .rodata.ap_trampoline, "a"
    .balign 16
    .global ap_trampoline_start, ap_trampoline_end
    .global ap_trampoline_cr3, ap_trampoline_stack, ap_trampoline_cpu
    .code16
ap_trampoline_start:
    cli
    xor %ax, %ax
    mov %ax, %ds
    lgdtl (0x8000 + ap_gdt_ptr - ap_trampoline_start)
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $0x08, $(0x8000 + ap_protected - ap_trampoline_start)

    .code32
ap_protected:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4
    mov (0x8000 + ap_trampoline_cr3 - ap_trampoline_start), %eax
    mov %eax, %cr3
    /* EFER.LME, and EFER.NXE where XD exists (boot.rs sets XD bits only then: SDM 5.1.4). */
    mov $0x80000001, %eax
    cpuid
    and $0x100000, %edx
    shr $9, %edx
    or $0x100, %edx
    mov %edx, %ebx
    mov $0xc0000080, %ecx
    rdmsr
    or %ebx, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80000000, %eax
    mov %eax, %cr0
    ljmpl $0x18, $(0x8000 + ap_long - ap_trampoline_start)

    .code64
ap_long:
    mov (0x8000 + ap_trampoline_stack - ap_trampoline_start), %rsp
    mov (0x8000 + ap_trampoline_cpu - ap_trampoline_start), %edi
    movabs $ap_entry, %rax
    jmp *%rax

    .balign 8
ap_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff
    .quad 0x00cf92000000ffff
    .quad 0x00af9a000000ffff
ap_gdt_ptr:
    .short ap_gdt_ptr - ap_gdt - 1
    .long 0x8000 + ap_gdt - ap_trampoline_start
    .balign 8
ap_trampoline_cr3:
    .quad 0
ap_trampoline_stack:
    .quad 0
ap_trampoline_cpu:
    .quad 0
ap_trampoline_end:
"#,
    options(att_syntax)
);

unsafe extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
    static ap_trampoline_cr3: u8;
    static ap_trampoline_stack: u8;
    static ap_trampoline_cpu: u8;
}

fn trampoline_slot(symbol: *const u8) -> *mut u64 {
    let start = &raw const ap_trampoline_start;
    (TRAMPOLINE + (symbol as u64 - start as u64)) as *mut u64
}

/// Starts CPU `cpu` (APIC ID = index); it enters `ap_entry` (`backend.rs`) on its own stack. The
/// caller waits until it has before starting another: they share the trampoline.
pub fn start_ap(cpu: usize) {
    // SAFETY: the trampoline bytes are a read-only blob in the image; 0x8000..0x9000 is
    // conventional memory no loader data lives in once the boot information has been read, and
    // no other CPU runs the trampoline while this one writes it (APs start one at a time).
    unsafe {
        let start = &raw const ap_trampoline_start;
        let len = &raw const ap_trampoline_end as usize - start as usize;
        core::ptr::copy_nonoverlapping(start, TRAMPOLINE as *mut u8, len);
        trampoline_slot(&raw const ap_trampoline_cr3).write_volatile(boot::page_table_root());
        trampoline_slot(&raw const ap_trampoline_stack).write_volatile(cpu::ap_stack_top(cpu));
        trampoline_slot(&raw const ap_trampoline_cpu).write_volatile(cpu as u64);
    }
    // The bootstrap CPU's idle timer is not set up yet: spin through the start-up delays.
    let mut delay = ClockDelay(PcClock { can_halt: false });
    apic::start_cpu(cpu as u32, (TRAMPOLINE >> 12) as u8, &mut delay);
}
