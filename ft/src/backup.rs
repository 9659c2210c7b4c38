//! The backup: receives and acknowledges the log, replays it into its copy of the guest, compares
//! everything it can, and goes live after winning arbitration.
//!
//! A hypervisor's exit loop calls [`Backup::poll`] on every pass and, before resuming the guest,
//! [`Backup::next_event_due`] with the guest's current point: it says whether to inject an event,
//! run (up to the next deterministic exit, or to a precise stop point), wait, or go live. At a
//! time/random-read exit it calls [`Backup::on_sync_read`] for the logged value, and when the guest
//! produces output [`Backup::on_output`], which checks it against the log and suppresses it.

use crate::arbiter::{Arbiter, ArbiterError, Side};
use crate::check::{Check, LoggedPoint};
use crate::detect::{Detector, Health};
use crate::frame::{FrameReader, MAX_FRAME, MAX_RECORDS, RejectCounts};
use crate::link::{LinkError, LinkStats, LogReceiver};
use crate::mutant::Mutants;
use crate::record::{Event, EventClass, Record};
use tandem_core::point::{ExecPoint, Position};

/// Records the backup holds received but not yet replayed; it takes a frame from the link when
/// it has room for a whole one.
pub const REPLAY_CAPACITY: usize = 2 * MAX_RECORDS;

/// Backup settings; times in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackupConfig {
    /// Protection epoch (the arbiter decides once per epoch).
    pub epoch: u32,
    /// Suspect the primary after this much silence from it.
    pub suspect_after: u64,
    /// Re-send the ack at least this often; it doubles as the backup's heartbeat.
    pub ack_period: u64,
}

/// Where the backup stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupState {
    /// Receiving, acknowledging and replaying.
    Replaying,
    /// The primary fell silent; asking the arbiter (waiting while it is unreachable).
    Arbitrating,
    /// Won arbitration: replaying everything received before going live.
    CatchingUp,
    /// Live: this copy is now the partition.
    Live,
    /// Lost arbitration: the primary carries on alone, this copy must stop.
    Stopped,
    /// Replay diverged from the log: this copy is unusable.
    Diverged,
}

/// What the guest may do next.
// Carries an event by value: the engine has no allocator to box it.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Due {
    /// Inject this interrupt or input now, then ask again.
    Deliver(Event),
    /// Run up to the next deterministic exit; with a precise counter, stop at `stop_at` if set.
    Run { stop_at: Option<LoggedPoint> },
    /// Hold the guest: the log does not yet cover its next step.
    Wait,
    /// Replay is complete: perform the held outputs `perform_from..perform_to` (those without
    /// `OutputDone`), then run live.
    GoLive { perform_from: u64, perform_to: u64 },
}

/// How replay departed from the log. The log's point may carry only a check tag of the
/// primary's PC and registers ([`crate::check::Check`]); the backup's own point is always whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DivergenceKind {
    /// The guest reached the event's position with different registers or PC.
    PointMismatch {
        expected: LoggedPoint,
        actual: ExecPoint,
    },
    /// The guest passed the point of an event it should have received there.
    RanPast {
        expected: LoggedPoint,
        actual: ExecPoint,
    },
    /// The guest asked for a different kind of event than the log holds next.
    EventMismatch {
        expected: EventClass,
        actual: EventClass,
    },
    /// The guest asked for an event where the log shows the primary passed without one.
    Unlogged { actual: EventClass, at: ExecPoint },
    /// The guest's output differs from the primary's.
    OutputMismatch {
        expected_seq: u64,
        expected_digest: u64,
        seq: u64,
        digest: u64,
    },
    /// `OutputDone` for an output other than the next one.
    OutputDoneOutOfOrder { expected: u64, got: u64 },
}

/// A detected divergence and the index of the log record where it showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    /// Log index of the record replay disagreed with.
    pub index: u64,
    /// What disagreed.
    pub kind: DivergenceKind,
}

/// Why a replay call did not complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackupError {
    /// Replay diverged from the log (reported once, then the state is `Diverged`).
    Diverged(Divergence),
    /// The backup is not replaying (stopped, diverged or live).
    NotReplaying { state: BackupState },
    /// The guest reached an exit the log does not cover: it ran without `Due::Run`.
    NotHeld { at: Position },
    /// The link failed (not a transient condition).
    Link(LinkError),
}

/// Which synchronous read the guest performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncRead {
    /// Time (RDTSC, counter register).
    Time,
    /// Random number (RDRAND).
    Random,
}

/// The replaying side of a protected partition.
pub struct Backup<L: LogReceiver, A: Arbiter> {
    link: L,
    arbiter: A,
    config: BackupConfig,
    mutants: Mutants,
    state: BackupState,
    reader: FrameReader,
    queue: heapless::Deque<Record, REPLAY_CAPACITY>,
    consumed: u64,
    /// The furthest point the log received so far reaches: replay never goes beyond it.
    horizon: Option<LoggedPoint>,
    /// The last heartbeat's full point (and log index), until the guest reaches or passes it.
    heartbeat_check: Option<(u64, LoggedPoint)>,
    outputs: u64,
    done: u64,
    detector: Detector,
    acked: u64,
    acked_at: u64,
    divergence: Option<Divergence>,
    scratch: [u8; MAX_FRAME],
}

impl<L: LogReceiver, A: Arbiter> Backup<L, A> {
    /// A backup starting to replay at time `now` from the start of the log.
    pub fn new(link: L, arbiter: A, config: BackupConfig, now: u64) -> Self {
        Self {
            link,
            arbiter,
            config,
            mutants: Mutants::default(),
            state: BackupState::Replaying,
            reader: FrameReader::for_epoch(config.epoch),
            queue: heapless::Deque::new(),
            consumed: 0,
            horizon: None,
            heartbeat_check: None,
            outputs: 0,
            done: 0,
            detector: Detector::new(config.suspect_after, now),
            acked: 0,
            acked_at: now,
            divergence: None,
            scratch: [0; MAX_FRAME],
        }
    }

    /// Switch on deliberate bugs (simulator mutant tests only).
    #[cfg(feature = "sim")]
    pub fn set_mutants(&mut self, mutants: Mutants) {
        self.mutants = mutants;
    }

    /// Current state.
    pub fn state(&self) -> BackupState {
        self.state
    }

    /// Records received (and acknowledged or about to be).
    pub fn received(&self) -> u64 {
        self.reader.next_seq()
    }

    /// Records replayed.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Outputs the guest produced whose `OutputDone` has not been replayed: a backup whose guest
    /// has stopped waits for these (or for the primary's failure) before it stops too.
    pub fn outputs_owed(&self) -> u64 {
        self.outputs - self.done
    }

    /// The divergence that stopped replay, if any.
    pub fn divergence(&self) -> Option<&Divergence> {
        self.divergence.as_ref()
    }

    /// Frames refused by the record layer.
    pub fn rejects(&self) -> RejectCounts {
        self.reader.rejects()
    }

    /// How long the peer had been silent at `now`, as of the last poll: at a suspicion, the
    /// detection part of a failover.
    pub fn silent_for(&self, now: u64) -> u64 {
        self.detector.silent_for(now)
    }

    /// The arbiter, for its timers (a witness over the network retries unanswered requests).
    pub fn arbiter_mut(&mut self) -> &mut A {
        &mut self.arbiter
    }

    /// The link's counters.
    pub fn link_stats(&self) -> LinkStats {
        self.link.stats()
    }

    /// Advance time: receive and acknowledge frames, detect, arbitrate.
    pub fn poll(&mut self, now: u64) -> Result<BackupState, BackupError> {
        self.link.poll(now);
        if matches!(
            self.state,
            BackupState::Replaying | BackupState::Arbitrating
        ) {
            self.receive()?;
            let received = self.received();
            if received != self.acked || now - self.acked_at >= self.config.ack_period {
                self.link.ack(received);
                self.acked = received;
                self.acked_at = now;
            }
        }
        if self.state == BackupState::Replaying
            && let Health::Suspect { .. } = self.detector.observe(self.link.peer_activity(), now)
        {
            self.state = if self.mutants.skip_arbitration {
                BackupState::CatchingUp
            } else {
                BackupState::Arbitrating
            };
        }
        if self.state == BackupState::Arbitrating {
            self.state = match self.arbiter.test_and_set(self.config.epoch, Side::Backup) {
                Ok(Side::Backup) => BackupState::CatchingUp,
                Err(ArbiterError::Unreachable) => BackupState::Arbitrating,
                Ok(Side::Primary) | Err(_) => BackupState::Stopped,
            };
        }
        Ok(self.state)
    }

    /// Take frames from the link while the replay queue has room for a whole one.
    fn receive(&mut self) -> Result<(), BackupError> {
        while self.queue.capacity() - self.queue.len() >= MAX_RECORDS {
            let Some(n) = self
                .link
                .recv(&mut self.scratch)
                .map_err(BackupError::Link)?
            else {
                return Ok(());
            };
            let before = self.queue.len();
            // Refused frames are counted by the reader and otherwise ignored: never trusted.
            if self
                .reader
                .accept(&self.scratch[..n], &mut self.queue)
                .is_ok()
            {
                for record in self.queue.iter().skip(before) {
                    if self
                        .horizon
                        .is_none_or(|h| h.position() < record.point.position())
                    {
                        self.horizon = Some(record.point);
                    }
                }
            }
        }
        Ok(())
    }

    /// What the guest, now at `at` (an exit boundary), may do next.
    pub fn next_event_due(&mut self, at: ExecPoint) -> Result<Due, BackupError> {
        self.ensure_replaying()?;
        self.skip_bookkeeping()?;
        let here = at.position();
        // The primary stood here when it logged the heartbeat, after every record before it: so
        // does the guest now. A guest that passes the point without stopping there (a precise
        // stop elsewhere) leaves it unchecked.
        if let Some((index, expected)) = self.heartbeat_check.filter(|(_, p)| p.position() <= here)
        {
            self.heartbeat_check = None;
            if expected.position() == here {
                self.check_point(index, expected, at)?;
            }
        }
        if let Some(front) = self.queue.front() {
            let (point, class) = (front.point, front.event.class());
            // A read or output is consumed at its exit, so the guest is past it once at its
            // position; an interrupt or input is delivered at its position.
            let passed =
                point.position() < here || (class != EventClass::Async && point.position() == here);
            if passed {
                self.diverge(
                    self.consumed,
                    DivergenceKind::RanPast {
                        expected: point,
                        actual: at,
                    },
                )?;
                // Reached only when divergence checks are switched off: drop the stale record.
                self.take();
            } else if class == EventClass::Async
                && point.position() == here
                && let Some((index, record)) = self.take()
            {
                self.check_point(index, point, at)?;
                return Ok(Due::Deliver(record.event));
            }
        }
        if let Some(horizon) = self.horizon.filter(|h| h.position() > here) {
            let next_async = self
                .queue
                .front()
                .filter(|r| r.event.class() == EventClass::Async)
                .map(|r| r.point);
            // A horizon before the next deterministic exit (a precise point in the current
            // interval) bounds the run as well: the primary may still log an interrupt between it
            // and that exit. Without a precise counter every point is an exit boundary, so a
            // horizon ahead of the guest is at least its next exit.
            let horizon_in_interval = (horizon.det_exits == here.det_exits
                && !self.mutants.ignore_precise_horizon)
                .then_some(horizon);
            let stop_at = match (next_async, horizon_in_interval) {
                (Some(a), Some(h)) => Some(if a.position() <= h.position() { a } else { h }),
                (a, h) => a.or(h),
            };
            return Ok(Due::Run { stop_at });
        }
        if self.state == BackupState::CatchingUp && !self.mutants.never_go_live {
            self.state = BackupState::Live;
            let perform_from = if self.mutants.ignore_output_done {
                0
            } else if self.mutants.skip_first_pending {
                (self.done + 1).min(self.outputs)
            } else {
                self.done
            };
            let perform_to = if self.mutants.drop_last_pending {
                self.outputs.saturating_sub(1).max(perform_from)
            } else {
                self.outputs
            };
            return Ok(Due::GoLive {
                perform_from,
                perform_to,
            });
        }
        Ok(Due::Wait)
    }

    /// The guest, at exit `at`, reads time or a random number: returns the logged value.
    pub fn on_sync_read(&mut self, at: ExecPoint, read: SyncRead) -> Result<u64, BackupError> {
        let Some(record) = self.expect_front(at, EventClass::Sync)? else {
            return Ok(0);
        };
        Ok(match (read, record.event) {
            (SyncRead::Time, Event::TimeRead { value })
            | (SyncRead::Random, Event::RandomRead { value }) => value,
            // A time read where the log has a random read (or the reverse): same class, wrong kind.
            _ => {
                self.diverge(
                    self.consumed - 1,
                    DivergenceKind::EventMismatch {
                        expected: EventClass::Sync,
                        actual: EventClass::Sync,
                    },
                )?;
                0
            }
        })
    }

    /// The guest produced output `digest` at `at`: checks it against the log and returns its
    /// sequence number. The output is suppressed: the caller keeps it in case of go-live.
    pub fn on_output(&mut self, at: ExecPoint, digest: u64) -> Result<u64, BackupError> {
        let record = self.expect_front(at, EventClass::Output)?;
        let seq = self.outputs;
        if let Some(Event::Output {
            seq: logged_seq,
            digest: logged_digest,
        }) = record.map(|r| r.event)
            && (logged_seq, logged_digest) != (seq, digest)
        {
            self.diverge(
                self.consumed - 1,
                DivergenceKind::OutputMismatch {
                    expected_seq: logged_seq,
                    expected_digest: logged_digest,
                    seq,
                    digest,
                },
            )?;
        }
        self.outputs += 1;
        Ok(seq)
    }

    fn ensure_replaying(&self) -> Result<(), BackupError> {
        match self.state {
            BackupState::Replaying | BackupState::Arbitrating | BackupState::CatchingUp => Ok(()),
            state => Err(BackupError::NotReplaying { state }),
        }
    }

    /// Take the front record, which must be of `class` at exactly `at`.
    /// `None` only when a divergence was swallowed by the `skip_divergence_check` mutant.
    fn expect_front(
        &mut self,
        at: ExecPoint,
        class: EventClass,
    ) -> Result<Option<Record>, BackupError> {
        self.ensure_replaying()?;
        self.skip_bookkeeping()?;
        let Some((index, record)) = self.take() else {
            // The log reaching this exit's count means the primary passed its exit of that count
            // without the read or output the guest asks for here; with a precise counter a
            // diverged guest may reach that exit at a later branch than the log's point, so the
            // count decides, not the position.
            if self.horizon.is_some_and(|h| h.det_exits >= at.det_exits) {
                self.diverge(
                    self.consumed,
                    DivergenceKind::Unlogged { actual: class, at },
                )?;
                // Reached only when divergence checks are switched off: carry on regardless.
                return Ok(None);
            }
            return Err(BackupError::NotHeld { at: at.position() });
        };
        let logged = record.event.class();
        if logged != class {
            self.diverge(
                index,
                DivergenceKind::EventMismatch {
                    expected: logged,
                    actual: class,
                },
            )?;
        }
        self.check_point(index, record.point, at)?;
        Ok(Some(record))
    }

    fn skip_bookkeeping(&mut self) -> Result<(), BackupError> {
        while self
            .queue
            .front()
            .is_some_and(|r| r.event.class() == EventClass::Bookkeeping)
        {
            let Some((index, record)) = self.take() else {
                break;
            };
            // A heartbeat's full point is checked once the guest stands at its position.
            if matches!(record.event, Event::Heartbeat { .. })
                && matches!(record.point.check, Check::Full { .. })
            {
                self.heartbeat_check = Some((index, record.point));
            }
            if let Event::OutputDone { seq } = record.event {
                if seq != self.done {
                    self.diverge(
                        index,
                        DivergenceKind::OutputDoneOutOfOrder {
                            expected: self.done,
                            got: seq,
                        },
                    )?;
                }
                self.done = seq + 1;
            }
        }
        Ok(())
    }

    fn check_point(
        &mut self,
        index: u64,
        expected: LoggedPoint,
        actual: ExecPoint,
    ) -> Result<(), BackupError> {
        if expected.matches(&actual) {
            return Ok(());
        }
        self.diverge(index, DivergenceKind::PointMismatch { expected, actual })
    }

    /// Remove the front record; returns it with its log index.
    fn take(&mut self) -> Option<(u64, Record)> {
        let record = self.queue.pop_front()?;
        self.consumed += 1;
        Some((self.consumed - 1, record))
    }

    fn diverge(&mut self, index: u64, kind: DivergenceKind) -> Result<(), BackupError> {
        if self.mutants.skip_divergence_check {
            return Ok(());
        }
        let divergence = Divergence { index, kind };
        self.divergence = Some(divergence.clone());
        self.state = BackupState::Diverged;
        Err(BackupError::Diverged(divergence))
    }
}
