//! Tandem's x86_64 backend: boot, CPUs, serial, and VT-x.
//!
//! The board's binary provides `board_main`, which the boot code calls on the bootstrap CPU, and
//! hands the embedded bundle to [`backend::primary_main`]; bring-up itself is shared
//! (`tandem_hw::bringup`), this crate provides its hooks ([`backend::PcBackend`]).
#![no_std]

mod apic;
pub mod backend;
pub mod boot;
mod bootinfo;
mod clock;
mod console;
mod cpu;
mod fault;
mod guest_load;
mod inject;
mod io;
mod logger;
mod machine;
mod nmi_watchdog;
mod panic;
mod pci;
mod recovery;
mod serial;
mod smp;
mod time;
mod vmx;
