//! A tiny runtime for test guests: long-mode entry, GDT and IDT, a console on the virtual UART,
//! the hypercall ABI, a timer sleep, and a way to expect and survive a fault.
#![no_std]

pub mod console;
pub mod cpu;
pub mod hypercall;
mod interrupts;
pub mod state;

pub use interrupts::{expect_fault, faults_taken, sleep_ns, spin_ns, ticks};
pub use tandem_guest_common::{self as common, Runtime, arg};

use core::arch::global_asm;

/// Defines the guest's entry: `entry!(main)` runs `main` after the runtime is set up.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        extern "C" fn guest_main() -> ! {
            $crate::init();
            let code: u64 = $main();
            $crate::hypercall::shutdown(code)
        }
    };
}

tandem_guest_common::runtime! {
    hypercall: hypercall::call,
    console_byte: console::put_byte,
    ticks: ticks,
}

/// Loads the guest's own GDT and IDT; called by [`entry!`] before `main`.
pub fn init() {
    cpu::load_gdt();
    interrupts::load_idt();
}

global_asm!(
    r#"
    .section .text.entry, "ax"
    .global _start
_start:
    lea rsp, [rip + guest_stack_top]
    lea rdi, [rip + __bss_start]
    lea rcx, [rip + __bss_end]
    sub rcx, rdi
    shr rcx, 3
    xor eax, eax
    cld
    rep stosq
    call guest_main
2:  hlt
    jmp 2b

    .section .bss.stack, "aw", @nobits
    .balign 16
    .skip 65536
guest_stack_top:
"#
);

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println!("guest panic: {}", info);
    hypercall::shutdown(0xdead)
}
