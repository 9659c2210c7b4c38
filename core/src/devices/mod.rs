//! Virtual devices and CPU feature models. Each is plain `#[repr(C)]` data so it can live in the
//! ledger and survive a microreboot.

pub mod cpuid;
pub mod line;
pub mod msr;
pub mod pl011;
pub mod ptimer;
pub mod rx;
pub mod sgi;
pub mod uart16550;
pub mod vgic;
pub mod vintc;
pub mod vtimer;
