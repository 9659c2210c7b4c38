//! A bare-metal program built outside the workspace, by `rustc` alone (`cargo xtask test` runs
//! it as `image = { format = "elf" }` and, flattened with objcopy, as `format = "flat"`): it
//! prints through the partition's 16550 at COM1 and ends with the SHUTDOWN hypercall. It uses
//! none of Tandem's guest runtime: it stands for a user's own program.
#![no_std]
#![no_main]

use core::arch::{asm, global_asm};

const COM1: u16 = 0x3f8;
/// Line status register, bit 5: the transmit holding register is empty.
const LSR: u16 = COM1 + 5;
const THR_EMPTY: u8 = 1 << 5;
/// Tandem's SHUTDOWN hypercall, over VMCALL with the number in RAX and the code in RDI.
const SHUTDOWN: u64 = 4;

global_asm!(
    ".section .text.start, \"ax\"",
    ".globl _start",
    "_start:",
    "lea rsp, [rip + stack_top]",
    "call main",
    ".section .bss",
    ".balign 16",
    ".skip 16384",
    "stack_top:",
);

fn put(byte: u8) {
    loop {
        let status: u8;
        // SAFETY: reads the partition's own UART status port.
        unsafe { asm!("in al, dx", in("dx") LSR, out("al") status) };
        if status & THR_EMPTY != 0 {
            break;
        }
    }
    // SAFETY: writes the partition's own UART data port.
    unsafe { asm!("out dx, al", in("dx") COM1, in("al") byte) };
}

#[unsafe(no_mangle)]
extern "C" fn main() -> ! {
    for &b in b"hello from a program built by plain rustc, entered at _start\n" {
        put(b);
    }
    loop {
        // SAFETY: SHUTDOWN ends the partition and does not return.
        unsafe { asm!("vmcall", in("rax") SHUTDOWN, in("rdi") 0u64) };
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
