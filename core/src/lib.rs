//! Tandem's portable core.
//!
//! Everything here is architecture-free policy: the configuration model and its validation, the
//! contract an architecture backend implements ([`vcpu::Vcpu`], [`platform::Platform`]), the
//! portable [`exit::Exit`] enum, the hypercall ABI, the virtual devices and the exit loop that ties
//! them together. It touches no hardware, so it is unit-tested on the host with a fake vCPU.
#![cfg_attr(not(test), no_std)]
// Policy only: every hardware access is an arch crate's, behind the Platform and Vcpu seams.
#![forbid(unsafe_code)]

pub mod addr;
pub mod beside;
pub mod bundle;
pub mod config;
pub mod console_out;
pub mod console_switch;
pub mod devices;
pub mod dispatch;
pub mod escape;
pub mod exit;
pub mod fdt;
pub mod hypercall;
pub mod journal;
pub mod outcome;
pub mod paging;
pub mod platform;
pub mod point;
pub mod power;
pub mod record;
pub mod replica;
pub mod report;
pub mod runtime;
pub mod ticks;
pub mod vcpu;

#[cfg(test)]
mod exit_loop_tests;
#[cfg(test)]
mod fake;
#[cfg(test)]
mod replica_tests;
