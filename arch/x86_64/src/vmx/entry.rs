//! The world switch. `vmx_enter` saves the host's callee-saved registers, records the stack
//! pointer as HOST_RSP, loads the guest's general registers and executes VMLAUNCH or VMRESUME.
//! A VM exit lands at `vmx_exit_point` (HOST_RIP) on that same stack, stores the guest's
//! registers back and returns 0 to `vmx_enter`'s caller. A failed VMLAUNCH/VMRESUME falls
//! through and returns 1. RSP and RIP are in the VMCS; RFLAGS is cleared by the exit.

use core::arch::naked_asm;

use super::regs::GuestRegs;

/// Runs the guest until its next exit; returns 0 after an exit, 1 if entry failed.
///
/// # Safety
/// A VMCS is current on this CPU with host state describing this CPU and HOST_RIP set to
/// [`exit_point`]; `regs` stays valid for the call.
#[unsafe(naked)]
pub unsafe extern "C" fn vmx_enter(regs: *mut GuestRegs, resume: u64) -> u64 {
    naked_asm!(
        "push rbp",
        "push rbx",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "push rdi",
        "mov rax, {host_rsp}",
        "vmwrite rax, rsp",
        "test rsi, rsi",
        "mov rax, [rdi + 0x00]",
        "mov rbx, [rdi + 0x08]",
        "mov rcx, [rdi + 0x10]",
        "mov rdx, [rdi + 0x18]",
        "mov rsi, [rdi + 0x20]",
        "mov rbp, [rdi + 0x30]",
        "mov r8,  [rdi + 0x38]",
        "mov r9,  [rdi + 0x40]",
        "mov r10, [rdi + 0x48]",
        "mov r11, [rdi + 0x50]",
        "mov r12, [rdi + 0x58]",
        "mov r13, [rdi + 0x60]",
        "mov r14, [rdi + 0x68]",
        "mov r15, [rdi + 0x70]",
        "mov rdi, [rdi + 0x28]",
        "jnz 2f",
        "vmlaunch",
        "jmp 3f",
        "2:",
        "vmresume",
        "3:",
        "add rsp, 8",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbx",
        "pop rbp",
        "mov eax, 1",
        "ret",
        ".global vmx_exit_point",
        "vmx_exit_point:",
        "push rdi",
        "mov rdi, [rsp + 8]",
        "mov [rdi + 0x00], rax",
        "mov [rdi + 0x08], rbx",
        "mov [rdi + 0x10], rcx",
        "mov [rdi + 0x18], rdx",
        "mov [rdi + 0x20], rsi",
        "mov [rdi + 0x30], rbp",
        "mov [rdi + 0x38], r8",
        "mov [rdi + 0x40], r9",
        "mov [rdi + 0x48], r10",
        "mov [rdi + 0x50], r11",
        "mov [rdi + 0x58], r12",
        "mov [rdi + 0x60], r13",
        "mov [rdi + 0x68], r14",
        "mov [rdi + 0x70], r15",
        "pop rax",
        "mov [rdi + 0x28], rax",
        "add rsp, 8",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbx",
        "pop rbp",
        "xor eax, eax",
        "ret",
        host_rsp = const super::fields::host::RSP.encoding(),
    )
}

unsafe extern "C" {
    fn vmx_exit_point();
}

/// The address VM exits resume at (HOST_RIP).
pub fn exit_point() -> u64 {
    vmx_exit_point as *const () as u64
}
