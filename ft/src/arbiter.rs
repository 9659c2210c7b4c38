//! Arbitration: who may go live is decided by one atomic test-and-set on storage both sides reach.

use core::sync::atomic::{AtomicU64, Ordering};

/// The two sides of a protected pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The side recording the log.
    Primary,
    /// The side replaying it.
    Backup,
}

impl Side {
    fn code(self) -> u64 {
        match self {
            Side::Primary => 1,
            Side::Backup => 2,
        }
    }

    fn from_code(code: u64) -> Option<Self> {
        match code {
            1 => Some(Side::Primary),
            2 => Some(Side::Backup),
            _ => None,
        }
    }
}

/// Why arbitration gave no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArbiterError {
    /// The arbiter cannot be reached now: the caller must wait, never guess.
    Unreachable,
    /// The arbiter has moved on to a later protection epoch: this pair is history and has lost.
    StaleEpoch { mine: u32, current: u32 },
    /// The arbiter holds a value this build cannot read.
    Corrupt { word: u64 },
}

/// A linearizable test-and-set, one per protection epoch.
pub trait Arbiter {
    /// Claim epoch `epoch` for `me`; returns the winner (which is `me` if the claim was first).
    fn test_and_set(&mut self, epoch: u32, me: Side) -> Result<Side, ArbiterError>;

    /// Who holds epoch `epoch`, without claiming it (`None`: nobody yet). A primary that may have
    /// been given up for dead asks this before performing anything more.
    fn holder(&mut self, epoch: u32) -> Result<Option<Side>, ArbiterError>;
}

/// A shared-memory word both cores reach: `epoch << 8 | side`.
pub struct SharedWordArbiter<'a> {
    word: &'a AtomicU64,
}

impl<'a> SharedWordArbiter<'a> {
    /// An arbiter over `word` (initially 0: no epoch claimed).
    pub fn new(word: &'a AtomicU64) -> Self {
        Self { word }
    }
}

impl Arbiter for SharedWordArbiter<'_> {
    fn test_and_set(&mut self, epoch: u32, me: Side) -> Result<Side, ArbiterError> {
        let claim = (u64::from(epoch) << 8) | me.code();
        let mut current = self.word.load(Ordering::Acquire);
        loop {
            let held_epoch = current >> 8;
            if held_epoch == u64::from(epoch) {
                return Side::from_code(current & 0xff)
                    .ok_or(ArbiterError::Corrupt { word: current });
            }
            if held_epoch > u64::from(epoch) {
                return Err(ArbiterError::StaleEpoch {
                    mine: epoch,
                    current: u32::try_from(held_epoch)
                        .map_err(|_| ArbiterError::Corrupt { word: current })?,
                });
            }
            match self
                .word
                .compare_exchange(current, claim, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(me),
                Err(now) => current = now,
            }
        }
    }

    fn holder(&mut self, epoch: u32) -> Result<Option<Side>, ArbiterError> {
        let current = self.word.load(Ordering::Acquire);
        let held_epoch = current >> 8;
        if held_epoch < u64::from(epoch) {
            return Ok(None);
        }
        if held_epoch > u64::from(epoch) {
            return Err(ArbiterError::StaleEpoch {
                mine: epoch,
                current: u32::try_from(held_epoch)
                    .map_err(|_| ArbiterError::Corrupt { word: current })?,
            });
        }
        Side::from_code(current & 0xff)
            .map(Some)
            .ok_or(ArbiterError::Corrupt { word: current })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_claim_wins_and_later_claims_see_the_winner() {
        let word = AtomicU64::new(0);
        let mut a = SharedWordArbiter::new(&word);
        let mut b = SharedWordArbiter::new(&word);
        assert_eq!(a.holder(1), Ok(None));
        assert_eq!(b.test_and_set(1, Side::Backup), Ok(Side::Backup));
        assert_eq!(a.holder(1), Ok(Some(Side::Backup)));
        assert_eq!(a.test_and_set(1, Side::Primary), Ok(Side::Backup));
        assert_eq!(a.test_and_set(2, Side::Primary), Ok(Side::Primary));
        assert_eq!(
            b.test_and_set(1, Side::Backup),
            Err(ArbiterError::StaleEpoch {
                mine: 1,
                current: 2
            })
        );
    }

    #[test]
    fn racing_threads_agree_on_one_winner() {
        for _ in 0..200 {
            let word = AtomicU64::new(0);
            let (p, b) = std::thread::scope(|s| {
                let p = s.spawn(|| SharedWordArbiter::new(&word).test_and_set(1, Side::Primary));
                let b = s.spawn(|| SharedWordArbiter::new(&word).test_and_set(1, Side::Backup));
                (p.join().unwrap(), b.join().unwrap())
            });
            assert_eq!(p, b);
        }
    }
}
