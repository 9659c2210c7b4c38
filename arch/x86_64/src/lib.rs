//! Tandem's x86_64 backend: boot, CPUs, serial, and VT-x.
//!
//! The board's binary provides `board_main`, which the boot code calls on the bootstrap CPU, and
//! hands the embedded bundle to [`hypervisor::primary_main`].
#![no_std]

mod apic;
pub mod boot;
mod bootinfo;
mod console;
mod cpu;
mod guest_load;
pub mod hypervisor;
mod inject;
mod io;
mod ledger;
mod logger;
mod machine;
mod panic;
mod platform;
mod serial;
mod smp;
mod time;
mod vmx;
