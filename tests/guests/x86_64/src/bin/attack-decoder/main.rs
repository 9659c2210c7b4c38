//! Attacks on the hypervisor's MMIO instruction decoding and fault injection, chosen by
//! `attack=` in the partition's arguments. Each ends with an access the hypervisor must stop or
//! a fault it must deliver correctly; none may stop another partition.
//!
//! - `straddle`: a store whose immediate lies on a page the guest unmapped after running it once
//!   (the TLB still holds it), so the hypervisor can fetch only its first two bytes.
//! - `compat`: a store from compatibility mode with a CS base, where CS:EIP and a flat EIP read
//!   different bytes; at the flat EIP lie two bytes followed by an unmapped page.
//! - `walk`: a load through page tables that point outside the partition's memory.
//! - `realmode`: a denied RDMSR in real mode, whose #GP must arrive without an error code.
#![no_std]
#![no_main]

mod realmode;
mod tables;

use core::arch::asm;

use tandem_guest::{Guest, Runtime, arg, println};

tandem_guest::entry!(main);

/// Guest-physical (and, identity-mapped, linear) address no region backs.
const OUTSIDE: u64 = 0x1000_0000;
/// `mov byte [rax+0], 0x41; ret`: opcode and ModRM first, the 32-bit displacement after.
const STORE: [u8; 8] = [0xc6, 0x80, 0, 0, 0, 0, 0x41, 0xc3];
/// Two bytes before a page boundary in the 2-4 MiB block the guest maps with 4 KiB pages.
const STRADDLE_AT: u64 = 0x20_0ffe;
/// Scratch memory the store may hit harmlessly.
const SCRATCH: u64 = 0x30_0800;

fn main() -> u64 {
    let info = Guest::partition_info();
    match arg(info.args(), "attack").unwrap_or_default() {
        "straddle" => straddle(),
        "compat" => compat(),
        "walk" => walk(),
        "realmode" => realmode::run(),
        other => println!("ERROR: no attack named {other:?}"),
    }
    println!("ERROR: the attack was not stopped");
    99
}

/// Calls the code at `at` with RAX = `rax`.
fn call(at: u64, rax: u64) {
    // SAFETY: `at` holds code the guest wrote that returns; it may clobber what a C call does.
    unsafe { asm!("call {}", in(reg) at, inout("rax") rax => _, clobber_abi("C")) }
}

fn straddle() {
    tables::split_second_block();
    tables::write_code(STRADDLE_AT, &STORE);
    println!("executing a store whose last bytes are on a page no longer mapped");
    // No exit may come between these three: the TLB entry for the second page must survive.
    call(STRADDLE_AT, SCRATCH);
    tables::unmap_without_flush(STRADDLE_AT + 2);
    call(STRADDLE_AT, OUTSIDE);
}

fn compat() {
    // What a decoder ignoring CS sees: `c6 80`, then a page that is not mapped.
    tables::split_second_block();
    tables::write_code(STRADDLE_AT, &STORE[..2]);
    tables::unmap_without_flush(STRADDLE_AT + 2);
    // What runs, at CS.base + EIP: `mov byte [eax], 0x41`, then a loop.
    let code = 0x30_0000;
    tables::write_code(code, &[0xc6, 0x00, 0x41, 0xeb, 0xfe]);
    println!(
        "storing from compatibility mode, CS base {:#x}",
        code - STRADDLE_AT
    );
    tables::enter_compat(code - STRADDLE_AT, STRADDLE_AT, OUTSIDE)
}

fn walk() {
    tables::second_block_table_at(OUTSIDE);
    println!("reading through a page table at GPA {OUTSIDE:#x}");
    // SAFETY: the point of the attack: the walk for this address leaves the partition.
    let v = unsafe { core::ptr::read_volatile(0x20_0000 as *const u64) };
    println!("read {v:#x}");
}
