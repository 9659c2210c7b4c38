//! Tries to own the CPU or the hardware state partitions share, chosen by `attack=`:
//! `user-hypercall` (VMCALL from ring 3), `tpr` (CR8 = 15, then sleep on the timer), `wbinvd`
//! (flush the shared caches in a loop), `cpuid` (every announced instruction must run),
//! `debug-loop` (a #DB whose delivery raises #DB again, forever) and `alignment-check` (#AC at
//! ring 3 must still reach the guest's own handler). Returns the number of failures.
#![no_std]
#![no_main]

mod features;
mod rings;

use core::arch::{asm, global_asm};

use tandem_guest::{Guest, Runtime, arg, println, sleep_ns};

tandem_guest::entry!(main);

/// Guest-physical 3 MiB: supervisor-only (see `rings::load`), the kernel's secret.
const SECRET: u64 = 0x30_0000;
const SECRET_TEXT: &[u8] = b"kernel-only secret printed from ring 3\n";

fn main() -> u64 {
    let info = Guest::partition_info();
    match arg(info.args(), "attack").unwrap_or_default() {
        "user-hypercall" => user_hypercall(),
        "tpr" => tpr(),
        "wbinvd" => wbinvd(),
        "cpuid" => features::check(),
        "debug-loop" => debug_loop(),
        "alignment-check" => alignment_check(),
        other => {
            println!("unknown attack {other:?}");
            1
        }
    }
}

unsafe extern "C" {
    fn user_console_write();
    fn user_shutdown();
    fn user_misaligned_load();
    static user_stack_top: u8;
}

fn user_stack() -> u64 {
    &raw const user_stack_top as u64
}

fn user_hypercall() -> u64 {
    for (i, b) in SECRET_TEXT.iter().enumerate() {
        tandem_guest::cpu::write_u64(SECRET + i as u64, u64::from(*b));
    }
    rings::load();
    let mut failures = 0;
    for (name, code) in [
        ("CONSOLE_WRITE", user_console_write as *const () as u64),
        ("SHUTDOWN", user_shutdown as *const () as u64),
    ] {
        match rings::enter_user(code, user_stack(), 2) {
            v if v == rings::UD as u64 => println!("ring-3 {name} refused with #UD"),
            v => {
                println!("ERROR: ring-3 {name} came back through vector {v:#x}");
                failures += 1;
            }
        }
    }
    failures
}

/// CR8 = 15 masks every interrupt class; a guest without a local APIC only hurts itself, but
/// the CPU's own TPR must stay the hypervisor's, or its wake-up vector never arrives.
fn tpr() -> u64 {
    // SAFETY: CR8 is the guest's task priority; nothing else depends on it here.
    unsafe { asm!("mov cr8, {}", in(reg) 15u64, options(nomem, nostack)) };
    let tpr: u64;
    // SAFETY: reading CR8 has no side effect.
    unsafe { asm!("mov {}, cr8", out(reg) tpr, options(nomem, nostack)) };
    println!("TPR set to {tpr}; sleeping on the timer");
    for _ in 0..3 {
        sleep_ns(2_000_000);
    }
    println!("woke 3 times with TPR {tpr}");
    u64::from(tpr != 15)
}

fn wbinvd() -> u64 {
    const ROUNDS: u32 = 2000;
    println!("flushing the caches {ROUNDS} times");
    for _ in 0..ROUNDS {
        // SAFETY: WBINVD only writes back and invalidates caches.
        unsafe { asm!("wbinvd", options(nomem, nostack)) };
    }
    println!("flushed {ROUNDS} times");
    0
}

/// An instruction breakpoint on the first instruction of the #DB handler: every delivery of
/// #DB raises #DB again before the handler runs, forever (the family of CVE-2015-8104, whose
/// data-breakpoint form Bochs does not model). IST1 keeps the stack from running out.
fn debug_loop() -> u64 {
    rings::load();
    let handler = rings::debug_handler_address();
    // DR7: L0, R/W0 = 00 (execution), LEN0 = 00, bit 10 reads as 1 (SDM Vol. 3A, 18.2.4).
    let dr7: u64 = 1 | 1 << 10;
    println!("breakpoint on my #DB handler at {handler:#x}; triggering it");
    // SAFETY: arms a breakpoint on the guest's own handler; INT 1 enters it.
    unsafe {
        asm!("mov dr0, {h}", "mov dr7, {dr7}", "int 1",
             h = in(reg) handler, dr7 = in(reg) dr7, options(nostack))
    }
    println!("ERROR: the #DB loop ended and the guest ran on");
    1
}

fn alignment_check() -> u64 {
    rings::load();
    // SAFETY: CR0.AM enables alignment checks at CPL 3 with RFLAGS.AC (SDM Vol. 3A, 2.5).
    unsafe {
        asm!("mov {t}, cr0", "bts {t}, 18", "mov cr0, {t}", t = out(reg) _, options(nostack))
    };
    let v = rings::enter_user(
        user_misaligned_load as *const () as u64,
        user_stack(),
        2 | rings::RFLAGS_AC,
    );
    if v == rings::AC as u64 {
        println!("misaligned ring-3 load raised #AC in my own handler");
        0
    } else {
        println!("ERROR: misaligned ring-3 load came back through vector {v:#x}");
        1
    }
}

global_asm!(
    r#"
    .section .text.user, "ax"
    .global user_console_write, user_shutdown, user_misaligned_load
user_console_write:
    mov eax, 1
    mov edi, {secret}
    mov esi, {len}
    vmcall
    int 0x80
user_shutdown:
    mov eax, 4
    mov edi, 0x66
    vmcall
    int 0x80
user_misaligned_load:
    mov rax, [rsp - 3]
    int 0x80

    .section .bss.user, "aw", @nobits
    .balign 16
    .skip 4096
    .global user_stack_top
user_stack_top:
"#,
    secret = const SECRET,
    len = const SECRET_TEXT.len(),
);
