//! The first instructions, at EL2 with the MMU off (QEMU `-kernel` ELF: X0 = 0, DTB at the base of
//! RAM). Secondary CPUs come in at `secondary_entry` from PSCI CPU_ON with their index in X0, or
//! at `spin_entry` from a firmware's spin table.
//!
//! With the MMU off every data access is Device-nGnRnE (Arm ARM D8.2.11): unaligned accesses
//! fault and exclusives are IMPLEMENTATION DEFINED. So before any Rust code runs, each CPU turns
//! the EL2 MMU on with one identity map: the first GiB (QEMU `virt`'s devices: GIC, PL011) as
//! Device-nGnRnE, the next two (RAM) as Normal write-back, the fourth (a Raspberry Pi 4's
//! peripherals, from 0xfc000000) Device-nGnRnE again, all as level-1 blocks of a 39-bit address
//! space.
//! Then it takes its own stack and calls `board_main` (bootstrap CPU) or `secondary_main`.
//!
//! This map is the one board fact that stays a link-time constant: it must exist before any
//! Rust code runs, long before the embedded bundle (and the board's memory map in it) is parsed.
//! It covers QEMU `virt`'s device space (GIC, PL011) and the first 2 GiB of its RAM, where the
//! boards put everything the hypervisor uses (validation keeps the hypervisor and its board's
//! RAM below 3 GiB), and the Raspberry Pi 4's device space.

use aarch64_cpu::registers::{MAIR_EL2, SCTLR_EL2, TCR_EL2};
use core::arch::global_asm;

/// Stack size of each CPU. A fault-tolerant backup's replay engine (about 50 KiB) lives on the
/// stack of the CPU that runs it.
pub const STACK_SIZE: usize = 256 * 1024;
/// CPUs the boot code has stacks for.
pub const MAX_CPUS: usize = tandem_core::config::MAX_CPUS;

/// MAIR_EL2: attribute 0 = Device-nGnRnE, attribute 1 = Normal, inner/outer write-back
/// non-transient read/write-allocate (Arm ARM D19.2.98).
const MAIR: u64 = MAIR_EL2::Attr0_Device::nonGathering_nonReordering_noEarlyWriteAck.value
    | MAIR_EL2::Attr1_Normal_Outer::WriteBack_NonTransient_ReadWriteAlloc.value
    | MAIR_EL2::Attr1_Normal_Inner::WriteBack_NonTransient_ReadWriteAlloc.value;
/// TCR_EL2 (E2H = 0, Arm ARM D19.2.139): T0SZ = 25 (39-bit VA, walks start at level 1), inner and
/// outer write-back, inner shareable, 4 KiB granule, PS = 40 bits, and RES1 bits 23 and 31, which
/// aarch64-cpu does not name.
const TCR: u64 = TCR_EL2::T0SZ.val(25).value
    | TCR_EL2::IRGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable.value
    | TCR_EL2::ORGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable.value
    | TCR_EL2::SH0::Inner.value
    | TCR_EL2::TG0::KiB_4.value
    | TCR_EL2::PS::Bits_40.value
    | 1 << 23
    | 1 << 31;
/// SCTLR_EL2: RES1 bits (Arm ARM D19.2.118) plus M (MMU), C (data cache), I (instruction cache).
const SCTLR: u64 = 0x30c5_0830
    | SCTLR_EL2::M::Enable.value
    | SCTLR_EL2::C::Cacheable.value
    | SCTLR_EL2::I::Cacheable.value;
/// Level-1 block descriptors: valid block, AF; device blocks execute-never.
const BLOCK_DEVICE: u64 = 0b01 | 1 << 10 | 1 << 54;
const BLOCK_NORMAL: u64 = 0b01 | 1 << 10 | 3 << 8 | 1 << 2;

global_asm!(
    r#"
    .section .text.boot, "ax"
    .global _start
_start:
    msr daifset, #0xf
    /* Clear .bss (the boot CPU only; it holds the page table and the stacks). */
    adrp x1, __bss_start
    add x1, x1, :lo12:__bss_start
    adrp x2, __bss_end
    add x2, x2, :lo12:__bss_end
1:  cmp x1, x2
    b.hs 2f
    str xzr, [x1], #8
    b 1b
2:  /* The identity map, shared by every CPU. */
    adrp x1, boot_l1
    ldr x2, ={device}
    str x2, [x1]
    mov x3, #1
3:  lsl x4, x3, #30
    ldr x2, ={normal}
    orr x2, x2, x4
    str x2, [x1, x3, lsl #3]
    add x3, x3, #1
    cmp x3, #3
    b.lo 3b
    ldr x2, ={device}
    mov x4, #0xc0000000
    orr x2, x2, x4
    str x2, [x1, #24]
    mov x19, #0
    b boot_common

    /* A core released from the firmware's spin table comes with nothing in X0: its index is
       its MPIDR_EL1.Aff0, as for PSCI (`backend::start_cpu`). */
    .global spin_entry
spin_entry:
    mrs x0, mpidr_el1
    and x0, x0, #0xff

    .global secondary_entry
secondary_entry:
    msr daifset, #0xf
    mov x19, x0

boot_common:
    ldr x1, ={mair}
    msr mair_el2, x1
    ldr x1, ={tcr}
    msr tcr_el2, x1
    adrp x1, boot_l1
    msr ttbr0_el2, x1
    dsb sy
    tlbi alle2
    dsb sy
    isb
    ldr x1, ={sctlr}
    msr sctlr_el2, x1
    isb
    /* Stack: the top of this CPU's slot. */
    adrp x1, boot_stacks
    add x1, x1, :lo12:boot_stacks
    add x2, x19, #1
    mov x3, #{stack}
    madd x1, x2, x3, x1
    mov sp, x1
    adrp x1, el2_vectors
    add x1, x1, :lo12:el2_vectors
    msr vbar_el2, x1
    isb
    mov x0, x19
    cbnz x19, 4f
    bl board_main
4:  bl secondary_main
5:  wfe
    b 5b

    .section .bss.boot, "aw", @nobits
    .balign 4096
    .global boot_l1
boot_l1:
    .skip 4096
    .balign 16
    .global boot_stacks
boot_stacks:
    .skip {stack} * {cpus}
"#,
    device = const BLOCK_DEVICE,
    normal = const BLOCK_NORMAL,
    mair = const MAIR,
    tcr = const TCR,
    sctlr = const SCTLR,
    stack = const STACK_SIZE,
    cpus = const MAX_CPUS,
);

unsafe extern "C" {
    static __image_start: u8;
    static __data_start: u8;
    static __image_end: u8;
    static boot_stacks: u8;
    static boot_l1: u8;
    fn secondary_entry();
    fn spin_entry();
}

/// The EL2 map's level-1 table, which every CPU's TTBR0_EL2 names (`el2_map` refines it).
pub fn l1_table() -> u64 {
    core::ptr::addr_of!(boot_l1) as u64
}

/// Where the image's writable data begins: code and read-only data lie before it.
pub fn data_start() -> u64 {
    core::ptr::addr_of!(__data_start) as u64
}

/// The top of CPU `cpu`'s own stack, as `boot_common` set it.
fn stack_top(cpu: usize) -> u64 {
    core::ptr::addr_of!(boot_stacks) as u64 + (cpu as u64 + 1) * STACK_SIZE as u64
}

/// Runs `f(cpu)` on CPU `cpu`'s own stack reset to its top: whatever ran on it is abandoned.
pub fn on_fresh_stack(cpu: usize, f: extern "C" fn(usize) -> !) -> ! {
    // SAFETY: the stack belongs to this CPU and whatever ran on it is abandoned (the caller's
    // point); `f` never returns, so nothing pops past the top.
    unsafe {
        core::arch::asm!(
            "mov sp, {top}",
            "blr {f}",
            "udf #0",
            top = in(reg) stack_top(cpu),
            f = in(reg) f,
            in("x0") cpu,
            options(noreturn)
        )
    }
}

/// The physical range the loaded image occupies (code, data and `.bss`).
pub fn image_range() -> (u64, u64) {
    (
        core::ptr::addr_of!(__image_start) as u64,
        core::ptr::addr_of!(__image_end) as u64,
    )
}

/// Where PSCI CPU_ON starts a secondary CPU (physical = virtual: the map is the identity).
pub fn secondary_entry_point() -> u64 {
    secondary_entry as *const () as u64
}

/// Where a core released from a spin table starts.
pub fn spin_entry_point() -> u64 {
    spin_entry as *const () as u64
}
