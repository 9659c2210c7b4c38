//! A guest's general registers while it is not running, laid out for the world switch.

/// RSP and RIP live in the VMCS; `entry.rs` addresses these fields by offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct GuestRegs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}
const _: () = assert!(core::mem::offset_of!(GuestRegs, rdi) == 0x28);
const _: () = assert!(core::mem::offset_of!(GuestRegs, r15) == 0x70);
