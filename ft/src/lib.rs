//! Tandem's fault-tolerance engine: deterministic log-and-replay of a partition from a primary to a
//! backup, with the output rule, failure detection, arbitration, go-live and re-protection.
//!
//! The engine is `no_std` and allocation-free. A hypervisor's exit loop drives it: the primary
//! through [`primary::Primary`], the backup through [`backup::Backup`]. With the `sim` feature,
//! [`sim`] runs both against a model guest under injected faults and checks the protocol's invariants.
#![cfg_attr(not(test), no_std)]
// Only the shared-memory ring (`link::ring`) needs `unsafe`; it allows it for itself.
#![deny(unsafe_code)]

#[cfg(feature = "sim")]
extern crate std;

pub mod arbiter;
pub mod backup;
pub mod batch;
pub mod check;
pub mod codec;
pub mod detect;
pub mod frame;
pub mod latency;
pub mod link;
pub mod mutant;
pub mod primary;
pub mod record;
pub mod reprotect;
#[cfg(feature = "sim")]
pub mod sim;
pub mod witness;
