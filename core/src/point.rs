//! Where in a guest's execution an event happened.
//!
//! The execution point is the seam between the exit loop and everything that replays or resumes a
//! guest: the FT engine (`tandem-ft`) logs events at points and its backup delivers them at the
//! same points; the microreboot commit rule decides by it whether an exit was committed. The exit
//! loop produces points ([`crate::runtime::VcpuRuntime::execution_point`]) from the deterministic-exit
//! count it keeps at each exit's commit and the register access every backend provides
//! ([`crate::vcpu::Vcpu::register_hash`]).

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

/// FNV-1a over whole registers, with each step's high bits folded down so a difference in any
/// bit reaches the whole hash: cheap enough for every exit of a fault-tolerant vCPU (a few
/// instructions per register), stable across builds and architectures, and not meant to resist
/// an adversary (the guest controls its registers; a mismatch only has to be noticed, not
/// authenticated).
pub fn register_hash(registers: impl IntoIterator<Item = u64>) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    registers.into_iter().fold(OFFSET, |hash, register| {
        let mixed = (hash ^ register).wrapping_mul(PRIME);
        mixed ^ (mixed >> 29)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_hash_sees_every_register_and_their_order() {
        let base = register_hash([1, 2, 3]);
        assert_eq!(base, register_hash([1, 2, 3]));
        assert_ne!(base, register_hash([1, 2, 4]));
        assert_ne!(base, register_hash([2, 1, 3]));
        assert_ne!(base, register_hash([1, 2, 3, 0]));
        assert_ne!(base, register_hash([1, 2, 3 | 1 << 63]), "a high bit");
    }

    #[test]
    fn position_orders_by_exits_then_precise_counter() {
        let at = |det_exits, precise| ExecPoint {
            det_exits,
            pc: 0,
            reg_hash: 0,
            precise,
        };
        assert!(at(1, None).position() < at(2, None).position());
        assert!(at(2, Some(5)).position() < at(2, Some(6)).position());
        assert_eq!(at(3, None).position(), at(3, Some(0)).position());
    }
}
