//! The witness: a third party on the network that decides which side of a fault-tolerant pair
//! goes live, for pairs on two boards that share no storage.
//!
//! A timeout only raises suspicion: a side that suspects its peer asks the witness for the
//! protection epoch, and goes live only if the witness names it; a side that cannot reach the
//! witness waits. The witness keeps, per `cluster` (one pair's deployment, a hash of its
//! configuration) and per epoch, a linearizable test-and-set with the semantics of
//! [`crate::arbiter::SharedWordArbiter`]: the first claim wins, later claims learn the winner, and
//! an epoch older than the newest one claimed is stale. One witness serves many pairs.
//!
//! - [`Request`] and [`Answer`]: the datagrams, carried on channel 1 of [`crate::link::ether`].
//! - [`Register`]: the witness's state machine, which the witness server persists.
//! - [`WitnessArbiter`]: a board's non-blocking client, an [`crate::arbiter::Arbiter`].

mod client;
mod register;
mod wire;

pub use client::{ClientConfig, WitnessArbiter, WitnessStats};
pub use register::{CLUSTERS, Claimed, Register, RegisterFull, RestoreError, RestoreReason};
pub use wire::{ANSWER_LEN, Answer, Ask, REQUEST_LEN, Request};
