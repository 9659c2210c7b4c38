//! A bare-metal program built outside the workspace, by `rustc` alone (`cargo xtask test` runs
//! it as `image = { format = "elf" }` and, flattened with objcopy, as `format = "flat"`): it
//! prints through the partition's PL011 and ends with the SHUTDOWN hypercall. It uses none of
//! Tandem's guest runtime: it stands for a user's own program.
#![no_std]
#![no_main]

use core::arch::{asm, global_asm};

/// The partition's PL011 (the QEMU `virt` boards' `guest_uart`): data register and flag register,
/// whose bit 5 says the transmit FIFO is full.
const UART: usize = 0x0900_0000;
const FR: usize = UART + 0x18;
const TXFF: u32 = 1 << 5;
/// Tandem's SHUTDOWN hypercall, over HVC with the number in X0 and the code in X1.
const SHUTDOWN: u64 = 4;

global_asm!(
    ".section .text.start, \"ax\"",
    ".globl _start",
    "_start:",
    "adrp x9, stack_top",
    "add x9, x9, :lo12:stack_top",
    "mov sp, x9",
    "bl main",
    ".section .bss",
    ".balign 16",
    ".skip 16384",
    "stack_top:",
);

fn put(byte: u8) {
    // SAFETY: the partition's own UART registers, mapped by the hypervisor.
    unsafe {
        while core::ptr::read_volatile(FR as *const u32) & TXFF != 0 {}
        core::ptr::write_volatile(UART as *mut u32, u32::from(byte));
    }
}

#[unsafe(no_mangle)]
extern "C" fn main() -> ! {
    for &b in b"hello from a program built by plain rustc, entered at _start\n" {
        put(b);
    }
    loop {
        // SAFETY: SHUTDOWN ends the partition and does not return.
        unsafe { asm!("hvc #0", in("x0") SHUTDOWN, in("x1") 0u64) };
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
