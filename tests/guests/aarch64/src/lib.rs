//! A tiny runtime for aarch64 test guests: entry at EL1 with the device tree in X0, FP enabled,
//! an identity-mapped MMU, exception vectors, a console on the PL011, the hypercall ABI over HVC,
//! PSCI (including starting a second vCPU), and timers and other interrupts through the GIC's
//! virtual CPU interface, a GICv3's or a GICv2's. Where the UART and the GIC are, and which GIC
//! it is, the device tree says (`machine`).
#![no_std]

pub mod console;
pub mod cpu;
pub mod gic;
pub mod hypercall;
mod irq;
pub mod machine;
mod sleep;
mod smp;
mod vectors;

pub use irq::{overflows, taken, ticks};
pub use sleep::{sleep_hypercall_ns, sleep_ns, sleep_physical_ns};
pub use smp::start_cpu;
pub use tandem_guest_common::{self as common, Runtime, arg};
pub use vectors::{expect_fault, faults_taken, last_fault};

use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering};

static DEVICE_TREE: AtomicU64 = AtomicU64::new(0);

/// The guest-physical address of the device tree the hypervisor passed in X0.
pub fn device_tree() -> u64 {
    DEVICE_TREE.load(Ordering::Relaxed)
}

tandem_guest_common::runtime! {
    hypercall: hypercall::call,
    console_byte: console::put_byte,
    ticks: ticks,
}

/// Defines the guest's entry: `entry!(main)` runs `main` after the runtime is set up.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        extern "C" fn guest_main(device_tree: u64) -> ! {
            $crate::init(device_tree);
            let code: u64 = $main();
            $crate::hypercall::shutdown(code)
        }
    };
}

/// Called by [`entry!`] before `main`: finds the machine's devices before anything prints.
pub fn init(device_tree: u64) {
    DEVICE_TREE.store(device_tree, Ordering::Relaxed);
    machine::discover();
}

/// MAIR: attribute 0 Device-nGnRnE, attribute 1 Normal write-back.
const MAIR: u64 = 0xff << 8;
/// TCR_EL1: T0SZ = 25, write-back, inner shareable, 4 KiB, EPD1 (no TTBR1 walks), IPS = 40 bits.
const TCR: u64 = 25 | 1 << 8 | 1 << 10 | 3 << 12 | 1 << 23 | 2 << 32;
/// SCTLR_EL1: RES1 bits plus M, C, I.
const SCTLR: u64 = 0x30d0_0800 | 1 | 1 << 2 | 1 << 12;
const BLOCK_DEVICE: u64 = 0b01 | 1 << 10 | 3 << 53;
const BLOCK_NORMAL: u64 = 0b01 | 1 << 10 | 3 << 8 | 1 << 2;

global_asm!(
    r#"
    .section .text.entry, "ax"
    .global _start
_start:
    mov x19, x0
    adrp x1, __bss_start
    add x1, x1, :lo12:__bss_start
    adrp x2, __bss_end
    add x2, x2, :lo12:__bss_end
1:  cmp x1, x2
    b.hs 2f
    str xzr, [x1], #8
    b 1b
2:  /* Identity map: device GiB 0, RAM GiB 1; `machine` maps the tree's other device GiBs. */
    adrp x1, guest_l1
    ldr x2, ={device}
    str x2, [x1]
    ldr x2, ={normal}
    orr x2, x2, #0x40000000
    str x2, [x1, #8]
    bl guest_mmu_on
    adrp x1, guest_stack_top
    add x1, x1, :lo12:guest_stack_top
    mov sp, x1
    mov x0, x19
    bl guest_main
3:  wfi
    b 3b

    /* PSCI CPU_ON entry of another vCPU, MMU off, context ID in X0: the same translation and
       vectors as the first, and the secondary stack. */
    .global guest_secondary_start
guest_secondary_start:
    mov x19, x0
    bl guest_mmu_on
    adrp x1, guest_secondary_stack_top
    add x1, x1, :lo12:guest_secondary_stack_top
    mov sp, x1
    mov x0, x19
    bl guest_secondary
4:  wfi
    b 4b

    /* Turns on this vCPU's MMU over the identity map in guest_l1, FP and the vectors. */
guest_mmu_on:
    adrp x1, guest_l1
    ldr x2, ={mair}
    msr mair_el1, x2
    ldr x2, ={tcr}
    msr tcr_el1, x2
    msr ttbr0_el1, x1
    mov x2, #(3 << 20)
    msr cpacr_el1, x2
    adrp x2, guest_vectors
    add x2, x2, :lo12:guest_vectors
    msr vbar_el1, x2
    dsb sy
    tlbi vmalle1
    dsb sy
    isb
    ldr x2, ={sctlr}
    msr sctlr_el1, x2
    isb
    ret

    .section .bss.tables, "aw", @nobits
    .balign 4096
guest_l1:
    .skip 4096
    .balign 16
    .skip 65536
guest_stack_top:
    .balign 16
    .skip 16384
guest_secondary_stack_top:
"#,
    device = const BLOCK_DEVICE,
    normal = const BLOCK_NORMAL,
    mair = const MAIR,
    tcr = const TCR,
    sctlr = const SCTLR,
);

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println!("guest panic: {}", info);
    hypercall::shutdown(0xdead)
}
