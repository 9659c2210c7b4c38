//! Fault injection into the hypervisor itself, chosen on the boot command line
//! (`inject=ud|pf|panic|write-text|exec-stack|guest-nmi`): the failures microreboot will recover
//! from, and today the proof that the failure reports name the vector, RIP and CPU before the
//! machine stops, that the hypervisor's own memory is mapped W^X (`boot::protect_image`), and
//! that an NMI arriving while a guest runs reaches the hypervisor's handler.

use core::arch::asm;

use tandem_core::config::System;
use tandem_hw::vcpu_power;

use crate::{apic, time};

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
    /// An NMI to every other CPU once its guest runs (fired by [`Injection::fire_at_guests`]).
    GuestNmi,
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
                "guest-nmi" => Some(Injection::GuestNmi),
                _ => None,
            })
    }

    /// Fires a fault in the hypervisor at bring-up; [`Injection::GuestNmi`] waits for the guests.
    pub fn fire(self) {
        if self == Injection::GuestNmi {
            return;
        }
        defmt::warn!("injecting a hypervisor fault: {}", self);
        match self {
            Injection::GuestNmi => {}
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

    /// Sends [`Injection::GuestNmi`]'s NMIs, from CPU 0, which enters its guest last: once every
    /// other partition's first vCPU is on, and has had a millisecond to enter its guest.
    pub fn fire_at_guests(self, system: &System) {
        if self != Injection::GuestNmi {
            return;
        }
        let others = || {
            system
                .partitions
                .iter()
                .enumerate()
                .filter(|(_, p)| p.cpus.first().is_some_and(|&cpu| cpu != 0))
        };
        while !others().all(|(index, _)| vcpu_power::vcpu_running(index as u32, 0)) {
            core::hint::spin_loop();
        }
        time::spin_until_ns(time::now_ns() + 1_000_000);
        defmt::warn!("injecting an NMI into every other partition's CPU");
        for (_, p) in others() {
            apic::send_nmi(u32::from(p.cpus[0]));
        }
    }
}
