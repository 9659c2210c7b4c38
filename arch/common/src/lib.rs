//! The hardware layer both backends share. Everything here touches memory the configuration or
//! the board gave the hypervisor (identity-mapped), or the hypervisor's own output lines; what
//! differs between x86_64 and aarch64 (how bytes reach a UART, which registers a report names)
//! comes in as a parameter.
#![no_std]

pub mod backend;
pub mod bringup;
pub mod build_id;
pub mod clock;
pub mod console;
pub mod console_input;
pub mod dirty;
pub mod frames;
pub mod guest_memory;
pub mod images;
pub mod kick;
pub mod ledger;
pub mod log;
pub mod net;
pub mod platform;
pub mod recover;
pub mod recovery;
pub mod replication;
pub mod report;
pub mod reprotect;
pub mod siblings;
pub mod tables;
pub mod vcpu_power;
