//! A bare-metal program built outside the workspace, by `rustc` alone (`cargo xtask test` runs
//! it as `image = { format = "elf" }` and, flattened with objcopy, as `format = "flat"`): it
//! prints through the partition's PL011 and ends with the SHUTDOWN hypercall. It uses none of
//! Tandem's guest runtime: it stands for a user's own program. A flat image may carry a padding
//! block 64 KiB in (the test run makes one of 24 MiB): the program checks every byte of it and
//! says whether it arrived intact.
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
/// The padding block: `PADDING!`, its length (u64), then bytes that follow from their offset.
const PADDING: usize = 0x4021_0000;
const MAGIC: u64 = u64::from_le_bytes(*b"PADDING!");

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
    // SAFETY: 64 KiB into the image, inside the partition's memory (at least 4 MiB from the
    // program's base at 0x40200000 in every configuration that runs it).
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
        unsafe { asm!("hvc #0", in("x0") SHUTDOWN, in("x1") 0u64) };
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
