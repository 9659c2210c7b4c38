//! Hypervisor self-recovery, the portable part: the ledger's header (attach or format, boots,
//! the cause of the last full reset), how an exit cut short is resolved, the console journal
//! that prints each partition line exactly once across a recovery, the escalation policy, the
//! audit after resume and the injection plan. The backends do the hardware steps (quiesce,
//! capture, image reload, rebuild) and call in here for every decision.
#![cfg_attr(not(test), no_std)]
// The ledger is read through safe views; the arch crates own the memory it lives in.
#![forbid(unsafe_code)]

pub mod audit;
pub mod cause;
pub mod escalation;
pub mod image;
pub mod inject;
pub mod ledger;
pub mod resolve;
pub mod steps;
