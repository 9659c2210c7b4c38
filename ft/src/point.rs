//! Where in a guest's execution an event happened.

use serde::{Deserialize, Serialize};

/// An execution point: the guest's progress when an event was recorded or must be replayed.
///
/// `det_exits` counts the deterministic exits the vCPU has taken; it alone orders points when the
/// platform has no precise counter, and asynchronous events are then delivered at exit boundaries.
/// `pc` and `reg_hash` do not order anything: they are checked on replay to catch divergence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecPoint {
    /// Deterministic exits taken so far.
    pub det_exits: u64,
    /// Guest program counter.
    pub pc: u64,
    /// Hash of the general registers.
    pub reg_hash: u64,
    /// Precise progress counter (guest branch count) where the platform has one.
    pub precise: Option<u64>,
}

/// The ordering part of an execution point.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// Deterministic exits taken so far.
    pub det_exits: u64,
    /// Precise counter, 0 when the platform has none.
    pub precise: u64,
}

impl ExecPoint {
    /// The point's place in the guest's progress, ignoring the values checked for divergence.
    pub fn position(&self) -> Position {
        Position {
            det_exits: self.det_exits,
            precise: self.precise.unwrap_or(0),
        }
    }
}
