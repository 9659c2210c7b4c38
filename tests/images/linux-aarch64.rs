//! A stand-in for a Linux arm64 kernel, built by `rustc` alone outside the workspace: an `Image`
//! with the arm64 header (Documentation/arch/arm64/booting.rst) that checks what the boot
//! protocol promises and prints it: x1-x3 zero, x0 a device tree 8-byte aligned above the
//! image's `image_size`, `/chosen` with `bootargs`, `stdout-path` and `linux,initrd-start`/`-end`,
//! and the initial RAM disk there intact (the test run makes one of 3 MiB: `INITRD!!`, its
//! length, bytes that follow from their offset). It ends with PSCI SYSTEM_OFF, as Linux does.
#![no_std]
#![no_main]

use core::arch::{asm, global_asm};

/// The partition's PL011: data register and flag register (bit 5: transmit FIFO full).
const UART: usize = 0x0900_0000;
const FR: usize = UART + 0x18;
const TXFF: u32 = 1 << 5;
/// PSCI SYSTEM_OFF (SMC32 function ID, DEN0022).
const SYSTEM_OFF: u64 = 0x8400_0008;

global_asm!(
    ".section .text.head, \"ax\"",
    ".globl _start",
    // The header: code0 (a branch past it), code1, text_offset, image_size, flags (little
    // endian, 4 KiB pages, anywhere in RAM), three reserved words, the magic, a reserved word.
    "b _start",
    ".long 0",
    ".quad 0",
    ".quad __image_size",
    ".quad 0xa",
    ".quad 0",
    ".quad 0",
    ".quad 0",
    ".ascii \"ARM\\x64\"",
    ".long 0",
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

unsafe extern "C" {
    static _head: u8;
    static _end: u8;
}

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

fn say_hex(n: u64) {
    say(b"0x");
    let mut started = false;
    for shift in (0..16).rev() {
        let digit = ((n >> (shift * 4)) & 0xf) as u8;
        if digit != 0 || started || shift == 0 {
            started = true;
            put(if digit < 10 { b'0' + digit } else { b'a' + digit - 10 });
        }
    }
}

fn be32(addr: u64) -> u32 {
    // SAFETY: inside the device tree, whose header gave its size (checked by the callers).
    u32::from_be(unsafe { core::ptr::read_volatile(addr as *const u32) })
}

fn be64(addr: u64) -> u64 {
    (u64::from(be32(addr)) << 32) | u64::from(be32(addr + 4))
}

/// The NUL-terminated string at `addr`, at most `max` bytes.
fn c_str(addr: u64, max: u64) -> &'static [u8] {
    let mut len = 0;
    // SAFETY: inside the device tree, as above; `max` bounds the walk.
    while len < max && unsafe { core::ptr::read_volatile((addr + len) as *const u8) } != 0 {
        len += 1;
    }
    // SAFETY: the `len` bytes just read.
    unsafe { core::slice::from_raw_parts(addr as *const u8, len as usize) }
}

/// What `/chosen` says.
#[derive(Default)]
struct Chosen {
    bootargs: &'static [u8],
    stdout: &'static [u8],
    initrd_start: u64,
    initrd_end: u64,
}

/// Walks the structure block of the flattened device tree at `dt` (devicetree spec 5.4) for the
/// properties of `/chosen`.
fn chosen(dt: u64) -> Option<Chosen> {
    const BEGIN_NODE: u32 = 1;
    const END_NODE: u32 = 2;
    const PROP: u32 = 3;
    const NOP: u32 = 4;
    const END: u32 = 9;
    if be32(dt) != 0xd00d_feed {
        return None;
    }
    let size = u64::from(be32(dt + 4));
    let (structs, strings) = (dt + u64::from(be32(dt + 8)), dt + u64::from(be32(dt + 12)));
    let (mut at, mut depth, mut in_chosen) = (structs, 0u32, false);
    let mut found = Chosen::default();
    while at < dt + size {
        let token = be32(at);
        at += 4;
        match token {
            BEGIN_NODE => {
                let name = c_str(at, 256);
                depth += 1;
                in_chosen = depth == 2 && name == b"chosen";
                at += (name.len() as u64 + 1).next_multiple_of(4);
            }
            END_NODE => {
                depth = depth.saturating_sub(1);
                in_chosen = false;
            }
            PROP => {
                let (len, name) = (u64::from(be32(at)), c_str(strings + u64::from(be32(at + 4)), 64));
                let value = at + 8;
                if in_chosen {
                    match name {
                        b"bootargs" => found.bootargs = c_str(value, len),
                        b"stdout-path" => found.stdout = c_str(value, len),
                        b"linux,initrd-start" => found.initrd_start = be64(value),
                        b"linux,initrd-end" => found.initrd_end = be64(value),
                        _ => {}
                    }
                }
                at = value + len.next_multiple_of(4);
            }
            NOP => {}
            END => return Some(found),
            _ => return None,
        }
    }
    None
}

/// Checks the initial RAM disk at `[start, end)` against the pattern the test run wrote.
fn initrd_intact(start: u64, end: u64) -> bool {
    // SAFETY: the range `/chosen` gave, inside the partition's memory.
    let read = |at: u64| unsafe { core::ptr::read_volatile(at as *const u8) };
    let header: [u8; 8] = core::array::from_fn(|i| read(start + i as u64));
    if &header != b"INITRD!!" || end < start + 16 {
        return false;
    }
    let len = (0..8).fold(0u64, |v, i| v | u64::from(read(start + 8 + i)) << (8 * i));
    if start + 16 + len != end {
        return false;
    }
    (0..len).all(|i| read(start + 16 + i) == (i ^ (i >> 8) ^ (i >> 16)) as u8)
}

#[unsafe(no_mangle)]
extern "C" fn main(dt: u64, x1: u64, x2: u64, x3: u64) -> ! {
    say(b"kernel entered at ");
    say_hex(core::ptr::addr_of!(_head) as u64);
    say(b"\n");
    say(if x1 | x2 | x3 == 0 { b"x1-x3 are zero\n" } else { b"x1-x3 are NOT zero\n" });
    let image_end = core::ptr::addr_of!(_end) as u64;
    if dt % 8 == 0 && dt >= image_end {
        say(b"device tree at ");
        say_hex(dt);
        say(b", 8-byte aligned, above the image's image_size\n");
    } else {
        say(b"ERROR: device tree at ");
        say_hex(dt);
        say(b" is misaligned or inside the image\n");
    }
    match chosen(dt) {
        None => say(b"ERROR: no device tree or no /chosen\n"),
        Some(c) => {
            say(b"bootargs: ");
            say(c.bootargs);
            say(b"\nstdout-path: ");
            say(c.stdout);
            say(b"\n");
            if c.initrd_end > c.initrd_start && initrd_intact(c.initrd_start, c.initrd_end) {
                say(b"initrd of ");
                say_hex(c.initrd_end - c.initrd_start);
                say(b" bytes intact\n");
            } else {
                say(b"ERROR: no intact initrd\n");
            }
        }
    }
    loop {
        // SAFETY: PSCI SYSTEM_OFF ends the partition and does not return.
        unsafe { asm!("hvc #0", in("x0") SYSTEM_OFF) };
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
