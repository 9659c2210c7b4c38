//! The first instructions: both loaders Tandem supports enter here in 32-bit protected mode with
//! paging off.
//!
//! - GRUB (multiboot2): `eax` = 0x36D76289, `ebx` = boot information.
//! - QEMU `-kernel` (PVH note): `ebx` = `hvm_start_info`, `eax` = 0.
//!
//! The code clears `.bss`, identity-maps the first 4 GiB with 2 MiB pages, enters long mode,
//! maps the image W^X and everything else no-execute ([`protect_image`]), and calls
//! `board_main(magic, info)`, which the board's binary provides.

use core::arch::global_asm;

use tandem_hw::frames;
use x86_64::registers::model_specific::{Efer, EferFlags};

/// The value `eax` holds when GRUB enters through the multiboot2 header.
pub const MULTIBOOT2_MAGIC: u32 = 0x36d7_6289;
/// `hvm_start_info.magic`, read through `ebx` on the PVH path.
pub const PVH_MAGIC: u32 = 0x336e_c578;

/// Size of the bootstrap CPU's stack, which it keeps after boot. A fault-tolerant backup's
/// replay engine (about 50 KiB) lives on the stack of the CPU that runs it.
pub const BOOT_STACK_SIZE: usize = 256 * 1024;

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
    mov %esi, %ebx
    call protect_image
    mov %ebp, %edi
    mov %ebx, %esi
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
    .global boot_image_pt
boot_image_pt:
    .skip {image_tables} * 4096
    .balign 16
boot_stack:
    .skip {stack}
    .global boot_stack_top
boot_stack_top:
"#,
    stack = const BOOT_STACK_SIZE,
    image_tables = const IMAGE_TABLES,
    options(att_syntax)
);

unsafe extern "C" {
    static boot_pml4: u8;
    static boot_pd: u8;
    static boot_image_pt: u8;
    static __image_start: u8;
    static __text_end: u8;
    static __data_start: u8;
    static __image_end: u8;
    static boot_stack_top: u8;
}

/// The top of the bootstrap CPU's stack.
pub fn stack_top() -> u64 {
    core::ptr::addr_of!(boot_stack_top) as u64
}

/// Where the image's writable data begins: code and read-only data lie before it.
pub fn data_start() -> u64 {
    core::ptr::addr_of!(__data_start) as u64
}

/// Where the application processors' start-up trampoline runs (its SIPI vector is this >> 12).
pub const AP_TRAMPOLINE: u64 = 0x8000;
/// 4 KiB tables for the first `IMAGE_TABLES` × 2 MiB, which hold the image (`link.ld` asserts it
/// ends below 8 MiB), so its sections get their own permissions.
const IMAGE_TABLES: usize = 4;
const PAGE: u64 = 0x1000;
const LARGE_PAGE: u64 = 0x20_0000;

// Page-table entry bits (SDM Vol. 3A, 5.5, tables 5-18 to 5-20).
const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const EXECUTE_DISABLE: u64 = 1 << 63;

/// XD support, which EFER.NXE enables (SDM Vol. 3A, 5.1.4): CPUID 80000001H:EDX[20].
const CPUID_XD: u32 = 1 << 20;

fn execute_disable_supported() -> bool {
    core::arch::x86_64::__cpuid(0x8000_0001).edx & CPUID_XD != 0
}

/// The permissions of the 4 KiB page at `addr` in the first 8 MiB: the image's text (with the
/// boot code and the PVH note before it) read-only and executable, its rodata read-only, its data
/// and `.bss` like every other page, writable data; the AP trampoline page writable and
/// executable (the bootstrap CPU writes it, the others run it).
fn low_page_flags(addr: u64, xd: u64) -> u64 {
    let start = image_range().0;
    let text_end = core::ptr::addr_of!(__text_end) as u64;
    let data_start = core::ptr::addr_of!(__data_start) as u64;
    match addr {
        AP_TRAMPOLINE => PRESENT | WRITABLE,
        a if (start..text_end).contains(&a) => PRESENT,
        a if (text_end..data_start).contains(&a) => PRESENT | xd,
        _ => PRESENT | WRITABLE | xd,
    }
}

/// Maps the image W^X and the rest of the identity map no-execute, on the bootstrap CPU's page
/// tables, which every CPU shares. Called once from `_start`, in long mode on the boot tables.
/// Without XD support (SDM Vol. 3A, 5.1.4) the image is still write-protected.
#[unsafe(no_mangle)]
extern "C" fn protect_image() {
    let xd = if execute_disable_supported() {
        // SAFETY: XD is supported, so setting EFER.NXE is valid; no entry uses bit 63 yet.
        unsafe { Efer::update(|f| f.insert(EferFlags::NO_EXECUTE_ENABLE)) };
        EXECUTE_DISABLE
    } else {
        0
    };
    let tables = core::ptr::addr_of!(boot_image_pt) as u64;
    let pd = core::ptr::addr_of!(boot_pd) as *mut u64;
    for t in 0..IMAGE_TABLES as u64 {
        let table = (tables + t * PAGE) as *mut u64;
        for i in 0..512 {
            let addr = t * LARGE_PAGE + i * PAGE;
            // SAFETY: `table` is one of the unused, page-aligned `boot_image_pt` pages in `.bss`.
            unsafe {
                table
                    .add(i as usize)
                    .write_volatile(addr | low_page_flags(addr, xd))
            };
        }
    }
    // SAFETY: the boot tables' 4 × 512 directory entries are in `.bss` and only this CPU runs.
    // Each new 4 KiB table maps the same addresses as the 2 MiB page it replaces, so the code
    // and stack in use stay mapped throughout; the CR3 reload flushes the old translations
    // (no entry is global: SDM Vol. 3A, 5.10.4.1).
    unsafe {
        for i in 0..4 * 512 {
            let entry = pd.add(i);
            let value = if i < IMAGE_TABLES {
                (tables + i as u64 * PAGE) | PRESENT | WRITABLE
            } else {
                entry.read_volatile() | xd
            };
            entry.write_volatile(value);
        }
        let (frame, flags) = x86_64::registers::control::Cr3::read_raw();
        x86_64::registers::control::Cr3::write_raw(frame, flags);
    }
}

/// A directory entry that maps a 2 MiB page rather than a table (PS, SDM Vol. 3A, table 5-18).
const LARGE: u64 = 1 << 7;
/// The physical-address bits of a paging-structure entry (SDM Vol. 3A, 5.5.5).
const ADDRESS: u64 = 0x000f_ffff_ffff_f000;

/// Maps `[start, start + len)` read-only, 4 KiB at a time (the recovery's pristine image copy,
/// recovery.md 6.0 rule 3): each 2 MiB page it touches becomes a table of 4 KiB pages with the
/// same permissions, from a fresh frame, and the range's pages lose their write permission;
/// CR0.WP makes that hold for the hypervisor too (`protect_cpu`). The bootstrap CPU only,
/// before the others start, as `protect_image`.
pub fn map_read_only(start: u64, len: u64) -> Result<(), frames::OutOfFrames> {
    let pd = core::ptr::addr_of!(boot_pd) as *mut u64;
    let end = start + len;
    let mut large = start & !(LARGE_PAGE - 1);
    while large < end {
        let index = (large / LARGE_PAGE) as usize;
        if index >= 4 * 512 {
            break;
        }
        // SAFETY: `index` is one of the boot tables' 4 × 512 directory entries (4 GiB).
        let entry = unsafe { pd.add(index).read_volatile() };
        let table = if entry & LARGE != 0 {
            let table = frames::alloc()?.raw();
            let flags = entry & !ADDRESS & !LARGE;
            for i in 0..512 {
                // SAFETY: `table` is a fresh frame, identity-mapped; nothing walks it yet.
                unsafe {
                    (table as *mut u64)
                        .add(i)
                        .write_volatile((large + i as u64 * PAGE) | flags)
                };
            }
            // SAFETY: the new table maps the same addresses with the same permissions as the
            // 2 MiB page it replaces; only this CPU runs, and the CR3 reload below flushes.
            unsafe { pd.add(index).write_volatile(table | PRESENT | WRITABLE) };
            table
        } else {
            entry & ADDRESS
        };
        let (from, to) = (start.max(large), end.min(large + LARGE_PAGE));
        let mut page = from & !(PAGE - 1);
        while page < to {
            // SAFETY: an entry of the 4 KiB table that maps `page`, identity-mapped.
            unsafe {
                let pte = (table as *mut u64).add(((page - large) / PAGE) as usize);
                pte.write_volatile(pte.read_volatile() & !WRITABLE);
            }
            page += PAGE;
        }
        large += LARGE_PAGE;
    }
    let (frame, flags) = x86_64::registers::control::Cr3::read_raw();
    // SAFETY: reloading the same root flushes the translations changed above (no entry is
    // global, SDM Vol. 3A, 5.10.4.1).
    unsafe { x86_64::registers::control::Cr3::write_raw(frame, flags) };
    Ok(())
}

/// Turns on this CPU's protections for the hypervisor's own memory: CR0.WP, so supervisor
/// writes honour read-only pages (SDM Vol. 3A, 5.1.3), and SMEP and SMAP where the CPU has them
/// (CPUID.(EAX=07H,ECX=0):EBX[7] and [20]; SDM Vol. 3A, 5.6.1), so a guest-controlled user page
/// can never be run or silently read by the hypervisor. Every CPU calls it from `cpu::init`,
/// after the log is up, so it also says what this CPU model gives.
pub fn protect_cpu() {
    use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};
    let leaf7 = core::arch::x86_64::__cpuid_count(7, 0).ebx;
    let mut cr4 = Cr4Flags::empty();
    if leaf7 & (1 << 7) != 0 {
        cr4 |= Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION;
    }
    if leaf7 & (1 << 20) != 0 {
        cr4 |= Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION;
    }
    // SAFETY: every hypervisor page is a supervisor page and the image's writable data is
    // mapped writable, so neither bit nor WP faults any access the hypervisor makes on purpose.
    unsafe {
        Cr0::update(|f| f.insert(Cr0Flags::WRITE_PROTECT));
        Cr4::update(|f| f.insert(cr4));
    }
    defmt::info!(
        "hypervisor memory W^X, NX {=bool}, SMEP {=bool}, SMAP {=bool}",
        Efer::read().contains(EferFlags::NO_EXECUTE_ENABLE),
        cr4.contains(Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION),
        cr4.contains(Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION)
    );
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
