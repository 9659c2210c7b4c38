//! Fault injection into the hypervisor itself, chosen on the boot command line
//! (`inject=ud|pf|panic|write-text|exec-stack`): the failures microreboot will recover from, and
//! today the proof that the failure reports name the vector, RIP and CPU before the machine stops,
//! and that the hypervisor's own memory is mapped W^X (`boot::protect_image`).

use core::arch::asm;

#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum Injection {
    /// An undefined instruction (#UD) in hypervisor context.
    InvalidOpcode,
    /// A read above the identity-mapped 4 GiB (#PF).
    PageFault,
    /// A Rust panic.
    Panic,
    /// A write to the hypervisor's own text, which must be read-only (#PF).
    WriteText,
    /// A jump to code on the stack, which must be no-execute (#PF).
    ExecStack,
}

impl Injection {
    pub fn from_cmdline(cmdline: &str) -> Option<Self> {
        cmdline
            .split_whitespace()
            .find_map(|arg| arg.strip_prefix("inject="))
            .and_then(|what| match what {
                "ud" => Some(Injection::InvalidOpcode),
                "pf" => Some(Injection::PageFault),
                "panic" => Some(Injection::Panic),
                "write-text" => Some(Injection::WriteText),
                "exec-stack" => Some(Injection::ExecStack),
                _ => None,
            })
    }

    pub fn fire(self) {
        defmt::warn!("injecting a hypervisor fault: {}", self);
        match self {
            // SAFETY: deliberately faults; the exception handler reports and stops the machine.
            Injection::InvalidOpcode => unsafe { asm!("ud2", options(nomem, nostack)) },
            Injection::PageFault => {
                // SAFETY: as above; 64 GiB is beyond the boot page tables' 4 GiB identity map.
                let _ = unsafe { core::ptr::read_volatile(0x10_0000_0000 as *const u64) };
            }
            Injection::Panic => panic!("injected panic"),
            Injection::WriteText => {
                let text = Self::fire as *const () as *mut u8;
                // SAFETY: writes back the byte already there, so even where text is writable
                // (the bug this tests for) the code is unchanged; with W^X it faults.
                unsafe { text.write_volatile(text.read_volatile()) };
            }
            Injection::ExecStack => {
                let ret = core::hint::black_box([0xc3u8]);
                // SAFETY: the bytes are a lone `ret`, so even where the stack is executable
                // (the bug this tests for) the call returns at once; with NX it faults.
                let f: extern "C" fn() = unsafe { core::mem::transmute(ret.as_ptr()) };
                f();
            }
        }
    }
}
