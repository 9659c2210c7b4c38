//! The witness's state machine: per cluster, the newest epoch claimed and its holder.
//!
//! Older epochs need no record: a question about one is answered "stale" whoever held it. The
//! register is pure; the server around it persists each [`Claimed`] decision before it sends the
//! answer that reveals it, and rebuilds the register from those records when it starts.

use super::wire::{Answer, Ask, Request};
use crate::arbiter::Side;

/// How many clusters one register holds (`no_std` without allocation: a fixed table). Claims for
/// a further cluster get no answer, so its boards wait rather than guess.
pub const CLUSTERS: usize = 64;

/// A decision: `side` holds `epoch` of `cluster`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claimed {
    pub cluster: u32,
    pub epoch: u32,
    pub side: Side,
}

/// A claim for a new cluster found the table full: nothing was decided and nothing may be
/// answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegisterFull;

/// Why a persisted record cannot be one the register wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreReason {
    /// More clusters than [`CLUSTERS`].
    Full,
    /// The cluster already holds epoch `held`, not older than this one: the register records
    /// only claims of a newer epoch, so the log is corrupt or was edited.
    NotNewer { held: u32 },
}

/// Record `index` (counting from 0) of the persisted decisions cannot be restored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestoreError {
    pub index: usize,
    pub reason: RestoreReason,
}

/// The newest claim of one cluster.
#[derive(Clone, Copy, Debug)]
struct Held {
    epoch: u32,
    side: Side,
}

/// Linearizable test-and-set per (cluster, epoch), answering as
/// [`crate::arbiter::SharedWordArbiter`] would for each cluster.
#[derive(Default)]
pub struct Register {
    held: heapless::index_map::FnvIndexMap<u32, Held, CLUSTERS>,
}

impl Register {
    /// A register with nothing claimed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuild the register from its persisted decisions, in the order they were made.
    pub fn restore(claims: impl IntoIterator<Item = Claimed>) -> Result<Self, RestoreError> {
        let mut register = Self::new();
        for (index, claim) in claims.into_iter().enumerate() {
            register
                .record(claim)
                .map_err(|reason| RestoreError { index, reason })?;
        }
        Ok(register)
    }

    fn record(&mut self, claim: Claimed) -> Result<(), RestoreReason> {
        if let Some(held) = self.held.get(&claim.cluster)
            && held.epoch >= claim.epoch
        {
            return Err(RestoreReason::NotNewer { held: held.epoch });
        }
        let held = Held {
            epoch: claim.epoch,
            side: claim.side,
        };
        self.held
            .insert(claim.cluster, held)
            .map(|_| ())
            .map_err(|_| RestoreReason::Full)
    }

    /// Answer one request. A claim that decides returns the decision too, which the caller must
    /// persist before it sends the answer (the register has moved on already: if persisting
    /// fails, the caller must stop answering altogether).
    pub fn handle(&mut self, req: Request) -> Result<(Answer, Option<Claimed>), RegisterFull> {
        let held = self.held.get(&req.cluster).copied();
        let current = held.map_or(0, |h| h.epoch);
        let answer = |holder: Option<Side>, current: u32| Answer {
            cluster: req.cluster,
            epoch: req.epoch,
            holder,
            current,
            nonce: req.nonce,
        };
        if let Some(held) = held
            && held.epoch == req.epoch
        {
            return Ok((answer(Some(held.side), current), None));
        }
        match req.ask {
            Ask::Claim(side) if req.epoch > current => {
                let claim = Claimed {
                    cluster: req.cluster,
                    epoch: req.epoch,
                    side,
                };
                self.record(claim).map_err(|_| RegisterFull)?;
                Ok((answer(Some(side), req.epoch), Some(claim)))
            }
            // Stale (`current` is newer) or nobody yet; epoch 0, which no valid request names,
            // is never claimed.
            _ => Ok((answer(None, current), None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arbiter::{Arbiter, ArbiterError, SharedWordArbiter};
    use core::sync::atomic::AtomicU64;
    use proptest::prelude::*;

    fn claim(cluster: u32, epoch: u32, side: Side) -> Request {
        Request {
            cluster,
            epoch,
            ask: Ask::Claim(side),
            nonce: 7,
        }
    }

    fn query(cluster: u32, epoch: u32) -> Request {
        Request {
            cluster,
            epoch,
            ask: Ask::Query,
            nonce: 7,
        }
    }

    /// What the register answers, as an arbiter reports it.
    fn ask(register: &mut Register, req: Request) -> Result<Option<Side>, ArbiterError> {
        register.handle(req).unwrap().0.outcome()
    }

    #[test]
    fn first_claim_wins_and_only_it_is_recorded() {
        let mut r = Register::new();
        assert_eq!(ask(&mut r, query(1, 1)), Ok(None));
        let (a, decided) = r.handle(claim(1, 1, Side::Backup)).unwrap();
        assert_eq!(a.holder, Some(Side::Backup));
        assert_eq!(a.nonce, 7, "nonce echoed");
        assert_eq!(
            decided,
            Some(Claimed {
                cluster: 1,
                epoch: 1,
                side: Side::Backup
            })
        );
        let (a, decided) = r.handle(claim(1, 1, Side::Primary)).unwrap();
        assert_eq!((a.holder, decided), (Some(Side::Backup), None));
        assert_eq!(ask(&mut r, query(1, 1)), Ok(Some(Side::Backup)));
        assert_eq!(ask(&mut r, query(1, 2)), Ok(None));
    }

    #[test]
    fn older_epochs_are_stale_for_claims_and_queries() {
        let mut r = Register::new();
        r.handle(claim(1, 1, Side::Backup)).unwrap();
        r.handle(claim(1, 3, Side::Primary)).unwrap();
        let stale = Err(ArbiterError::StaleEpoch {
            mine: 1,
            current: 3,
        });
        assert_eq!(ask(&mut r, query(1, 1)), stale);
        assert_eq!(ask(&mut r, claim(1, 1, Side::Primary)), stale);
        assert_eq!(r.handle(claim(1, 2, Side::Backup)).unwrap().1, None);
        assert_eq!(
            ask(&mut r, claim(1, 3, Side::Backup)),
            Ok(Some(Side::Primary))
        );
    }

    #[test]
    fn clusters_are_independent() {
        let mut r = Register::new();
        r.handle(claim(1, 5, Side::Backup)).unwrap();
        assert_eq!(ask(&mut r, query(2, 1)), Ok(None));
        assert_eq!(
            ask(&mut r, claim(2, 1, Side::Primary)),
            Ok(Some(Side::Primary))
        );
        assert_eq!(ask(&mut r, query(1, 5)), Ok(Some(Side::Backup)));
    }

    #[test]
    fn restore_after_restart_gives_the_same_answers() {
        let mut r = Register::new();
        let mut log = Vec::new();
        for (cluster, epoch, side) in [
            (1, 1, Side::Backup),
            (2, 1, Side::Primary),
            (1, 2, Side::Primary),
        ] {
            log.extend(r.handle(claim(cluster, epoch, side)).unwrap().1);
        }
        let mut again = Register::restore(log.iter().copied()).unwrap();
        for req in [
            query(1, 1),
            query(1, 2),
            query(1, 3),
            query(2, 1),
            query(3, 1),
            claim(1, 2, Side::Backup),
            claim(2, 1, Side::Backup),
        ] {
            assert_eq!(r.handle(req), again.handle(req), "{req:?}");
        }
    }

    #[test]
    fn restore_refuses_records_the_register_never_writes() {
        let c = |cluster, epoch| Claimed {
            cluster,
            epoch,
            side: Side::Primary,
        };
        assert_eq!(
            Register::restore([c(1, 2), c(2, 1), c(1, 2)]).err(),
            Some(RestoreError {
                index: 2,
                reason: RestoreReason::NotNewer { held: 2 }
            })
        );
        assert_eq!(
            Register::restore([c(1, 2), c(1, 1)])
                .err()
                .map(|e| e.reason),
            Some(RestoreReason::NotNewer { held: 2 })
        );
        let too_many = (0..=CLUSTERS as u32).map(|cluster| c(cluster, 1));
        assert_eq!(
            Register::restore(too_many).err(),
            Some(RestoreError {
                index: CLUSTERS,
                reason: RestoreReason::Full
            })
        );
    }

    #[test]
    fn a_full_table_refuses_new_clusters_but_serves_known_ones() {
        let mut r = Register::new();
        for cluster in 0..CLUSTERS as u32 {
            r.handle(claim(cluster, 1, Side::Primary)).unwrap();
        }
        assert_eq!(r.handle(claim(1000, 1, Side::Backup)), Err(RegisterFull));
        assert_eq!(ask(&mut r, query(1000, 1)), Ok(None), "still nobody");
        assert_eq!(
            ask(&mut r, claim(3, 2, Side::Backup)),
            Ok(Some(Side::Backup))
        );
        assert_eq!(
            ask(&mut r, claim(3, 2, Side::Primary)),
            Ok(Some(Side::Backup))
        );
    }

    #[derive(Clone, Copy, Debug)]
    enum Op {
        Claim(u32, Side),
        Query(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        let side = prop_oneof![Just(Side::Primary), Just(Side::Backup)];
        prop_oneof![
            (1u32..6, side).prop_map(|(e, s)| Op::Claim(e, s)),
            (1u32..6).prop_map(Op::Query),
        ]
    }

    proptest! {
        /// One cluster of the register answers every sequence as the shared-memory word does.
        #[test]
        fn matches_the_shared_word_arbiter(ops in proptest::collection::vec(op(), 0..40)) {
            let word = AtomicU64::new(0);
            let mut model = SharedWordArbiter::new(&word);
            let mut r = Register::new();
            for op in ops {
                let (want, got) = match op {
                    Op::Claim(epoch, side) => (
                        model.test_and_set(epoch, side).map(Some),
                        ask(&mut r, claim(9, epoch, side)),
                    ),
                    Op::Query(epoch) => (model.holder(epoch), ask(&mut r, query(9, epoch))),
                };
                prop_assert_eq!(want, got, "{:?}", op);
            }
        }
    }
}
