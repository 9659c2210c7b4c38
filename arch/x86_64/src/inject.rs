//! Fault injection into the hypervisor itself, chosen on the boot command line
//! (`inject=ud|pf|panic`): the failures microreboot will recover from, and today the proof that
//! the failure reports name the vector, RIP and CPU before the machine stops.

use core::arch::asm;

#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum Injection {
    /// An undefined instruction (#UD) in hypervisor context.
    InvalidOpcode,
    /// A read above the identity-mapped 4 GiB (#PF).
    PageFault,
    /// A Rust panic.
    Panic,
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
        }
    }
}
