//! A bare-metal program built outside the workspace, by `rustc` alone (`cargo xtask test` runs
//! it as `image = { format = "elf" }` and, flattened with objcopy, as `format = "flat"`): it
//! prints through the partition's 16550 at COM1 and ends with the SHUTDOWN hypercall. It uses
//! none of Tandem's guest runtime: it stands for a user's own program. A flat image may carry a
//! padding block 64 KiB in (the test run makes one of 24 MiB): the program checks every byte of
//! it and says whether it arrived intact.
#![no_std]
#![no_main]

use core::arch::{asm, global_asm};

const COM1: u16 = 0x3f8;
/// Line status register, bit 5: the transmit holding register is empty.
const LSR: u16 = COM1 + 5;
const THR_EMPTY: u8 = 1 << 5;
/// Tandem's SHUTDOWN hypercall, over VMCALL with the number in RAX and the code in RDI.
const SHUTDOWN: u64 = 4;
/// The padding block: `PADDING!`, its length (u64), then bytes that follow from their offset.
const PADDING: usize = 0x21_0000;
const MAGIC: u64 = u64::from_le_bytes(*b"PADDING!");

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

fn say(text: &[u8]) {
    for &b in text {
        put(b);
    }
}

fn say_number(mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    say(&digits[at..]);
}

/// The value of byte `i` of the padding.
fn padding_byte(i: usize) -> u8 {
    (i ^ (i >> 8) ^ (i >> 16)) as u8
}

/// Checks the padding block, if the image has one.
fn check_padding() {
    // SAFETY: 64 KiB into the image, inside the partition's memory (at least 4 MiB from GPA 0
    // in every configuration that runs it), identity-mapped by the boot page tables.
    let (magic, len) = unsafe {
        (
            core::ptr::read_volatile(PADDING as *const u64),
            core::ptr::read_volatile((PADDING + 8) as *const u64) as usize,
        )
    };
    if magic != MAGIC {
        return;
    }
    let data = PADDING + 16;
    for i in 0..len {
        // SAFETY: the image's own padding, which the test run made `len` bytes long.
        let byte = unsafe { core::ptr::read_volatile((data + i) as *const u8) };
        if byte != padding_byte(i) {
            say(b"padding damaged at byte ");
            say_number(i as u64);
            say(b"\n");
            return;
        }
    }
    say(b"padding of ");
    say_number(len as u64);
    say(b" bytes intact\n");
}

#[unsafe(no_mangle)]
extern "C" fn main() -> ! {
    say(b"hello from a program built by plain rustc, entered at _start\n");
    check_padding();
    loop {
        // SAFETY: SHUTDOWN ends the partition and does not return.
        unsafe { asm!("vmcall", in("rax") SHUTDOWN, in("rdi") 0u64) };
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
