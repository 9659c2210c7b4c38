//! Tandem's aarch64 backend: EL2 boot, MMU, GICv3 and its virtual interface, stage 2, PSCI and
//! exits, for QEMU `virt` with `virtualization=on,gic-version=3`.
//!
//! The board's binary provides `board_main`, which the boot code calls on the bootstrap CPU, and
//! hands the embedded bundle to [`backend::primary_main`]; bring-up itself is shared
//! (`tandem_hw::bringup`), this crate provides its hooks ([`backend::VirtBackend`]). Hypervisor
//! code is built for `aarch64-unknown-none-softfloat`: it never touches FP/SIMD registers, so
//! guests' stay theirs.
#![no_std]

pub mod backend;
pub mod boot;
mod clock;
mod console;
mod counter;
mod debugregs;
mod dirty;
mod dt;
mod el2_map;
mod entry;
mod fault;
mod firmware;
mod gic;
mod gich;
mod guest_load;
mod idregs;
mod inject;
mod logger;
mod lr;
mod machine;
mod panic;
mod physical_timer;
mod pl011;
mod pmu;
mod pristine;
mod psci;
mod recovery;
mod semihosting;
mod sgi;
mod snapshot;
mod stage2;
mod step;
mod stop;
mod sysreg;
mod time;
mod vcpu;
mod vcpu_state;
mod vgic;
mod virtual_time;
mod watchdog;
