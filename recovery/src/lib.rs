//! Hypervisor self-recovery. Today: the ledger's header, which says whether a memory region
//! holds preserved state this build can re-attach after a microreboot, or must be formatted.
#![cfg_attr(not(test), no_std)]
// The ledger is read through safe views; the arch crates own the memory it lives in.
#![forbid(unsafe_code)]

pub mod ledger;
