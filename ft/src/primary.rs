//! The primary: records non-deterministic inputs, streams them, holds each external output until
//! the backup acknowledged the log up to it, logs `OutputDone` once performed, throttles the guest
//! when the backup lags, and arbitrates when the backup falls silent.
//!
//! Records gather in one frame until something needs them on the link: an output (its ack
//! releases it), an `OutputDone` (the backup must not repeat a performed output), device input
//! (taken from its device, it exists nowhere else), the guest's stop, a full frame, or a
//! heartbeat period without a frame sent (then, with nothing to flush,
//! a heartbeat). The link is never silent longer than before, and each flush costs one header
//! and one CRC however many records it carries.
//!
//! A hypervisor's exit loop calls [`Primary::on_nondeterministic_input`] for every time/random read
//! (at the exit) and every interrupt or input it injects (at the injection point),
//! [`Primary::on_output`] when the guest produces output, [`Primary::boundary_reached`] at
//! completed exits it has nothing to log for (optional: it lets heartbeats advance the backup), and
//! [`Primary::poll`] on every pass; it performs the outputs [`Primary::next_release`] hands out and
//! reports each with [`Primary::output_performed`].

use crate::arbiter::{Arbiter, ArbiterError, Side};
use crate::batch::{Batch, BatchError};
use crate::codec::RecordError;
use crate::detect::{Detector, Health};
use crate::link::{LinkError, LinkStats, LogSender};
use crate::mutant::Mutants;
use crate::record::{Event, EventClass};
use tandem_core::point::{ExecPoint, Position};

/// Outputs that can be held at once waiting for the backup's ack.
pub const MAX_HELD_OUTPUTS: usize = 64;

/// Primary settings; times in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrimaryConfig {
    /// Protection epoch (the arbiter decides once per epoch).
    pub epoch: u32,
    /// Log a heartbeat when nothing else was sent for this long (half the suspicion timeout when
    /// records are still unacknowledged).
    pub heartbeat_period: u64,
    /// Suspect the backup after this much silence from it.
    pub suspect_after: u64,
    /// Throttle the guest when this many records are unacknowledged.
    pub max_lag_records: u64,
    /// Throttle the guest when acknowledgements have not advanced for this long.
    pub max_lag_time: u64,
}

/// Where the primary stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrimaryState {
    /// Streaming to a backup; outputs wait for its acks.
    Protected,
    /// The backup fell silent; asking the arbiter (waiting while it is unreachable).
    Arbitrating,
    /// Won arbitration: running unprotected, outputs released at once.
    Alone,
    /// Lost arbitration: the backup is live, this copy must stop.
    Stopped,
}

/// Why a primary call did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrimaryError {
    /// The log link or the held-output queue is full: stall the vCPU and retry after `poll`.
    Backpressure,
    /// This copy lost arbitration and must stop.
    Stopped,
    /// A point earlier than one already reported: the caller's exit accounting is broken.
    PointWentBackwards { last: Position, given: Position },
    /// Only time/random reads, interrupts and input are inputs.
    NotAnInput { class: EventClass },
    /// Outputs must be reported performed in the order they were released.
    OutputOutOfOrder { expected: u64, got: u64 },
    /// An output reported performed that was never released.
    OutputNotReleased { seq: u64 },
    /// A record could not be encoded.
    Encode(RecordError),
    /// The link refused a frame for a reason other than backpressure.
    Link(LinkError),
}

/// What `poll` tells the exit loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrimaryStatus {
    /// Current state.
    pub state: PrimaryState,
    /// The backup lags too far (or arbitration is pending): do not resume the guest now.
    pub throttle: bool,
}

/// Counters for measurements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrimaryStats {
    /// Records logged.
    pub records: u64,
    /// Bytes of the frames sent (what the link carried).
    pub log_bytes: u64,
    /// Frames sent.
    pub frames: u64,
    /// Heartbeat records among them.
    pub heartbeats: u64,
    /// Outputs produced.
    pub outputs: u64,
}

#[derive(Clone, Copy, Debug)]
struct Held {
    seq: u64,
    index: u64,
}

/// The recording side of a protected partition.
pub struct Primary<L: LogSender, A: Arbiter> {
    link: L,
    arbiter: A,
    config: PrimaryConfig,
    mutants: Mutants,
    state: PrimaryState,
    now: u64,
    point: ExecPoint,
    /// `point` was given by the caller (until then it is the start, of unknown PC and registers).
    reported: bool,
    next_index: u64,
    /// When the last frame left.
    last_send: u64,
    /// Records not yet sent, and whether one of them must leave at the next chance.
    batch: Batch,
    urgent: bool,
    held: heapless::Deque<Held, MAX_HELD_OUTPUTS>,
    next_output: u64,
    released: u64,
    done: u64,
    done_logged: u64,
    detector: Detector,
    /// When `poll` last ran: a longer gap than half the suspicion timeout is a stall.
    last_poll: u64,
    /// The backup may have given this copy up for dead (after a stall, or a long silence from it):
    /// nothing is released until the arbiter says it has not gone live.
    unconfirmed: bool,
    last_acked: u64,
    acks_moved_at: u64,
    stats: PrimaryStats,
}

impl<L: LogSender, A: Arbiter> Primary<L, A> {
    /// A primary starting protected at time `now`, with an empty log.
    pub fn new(link: L, arbiter: A, config: PrimaryConfig, now: u64) -> Self {
        Self {
            link,
            arbiter,
            config,
            mutants: Mutants::default(),
            state: PrimaryState::Protected,
            now,
            point: ExecPoint::default(),
            reported: false,
            next_index: 0,
            last_send: now,
            batch: Batch::for_epoch(config.epoch),
            urgent: false,
            held: heapless::Deque::new(),
            next_output: 0,
            released: 0,
            done: 0,
            done_logged: 0,
            detector: Detector::new(config.suspect_after, now),
            last_poll: now,
            unconfirmed: false,
            last_acked: 0,
            acks_moved_at: now,
            stats: PrimaryStats::default(),
        }
    }

    /// Switch on deliberate bugs (simulator mutant tests only).
    #[cfg(feature = "sim")]
    pub fn set_mutants(&mut self, mutants: Mutants) {
        self.mutants = mutants;
    }

    /// Current state.
    pub fn state(&self) -> PrimaryState {
        self.state
    }

    /// Counters.
    pub fn stats(&self) -> PrimaryStats {
        self.stats
    }

    /// The link's counters.
    pub fn link_stats(&self) -> LinkStats {
        self.link.stats()
    }

    /// How long the peer had been silent at `now`, as of the last poll: at a suspicion, the
    /// detection part of a failover.
    pub fn silent_for(&self, now: u64) -> u64 {
        self.detector.silent_for(now)
    }

    /// The arbiter, for a question of its own (whether the backup went live meanwhile) or its
    /// timers (a witness over the network retries unanswered requests).
    pub fn arbiter_mut(&mut self) -> &mut A {
        &mut self.arbiter
    }

    /// The latest execution point the primary was told about.
    pub fn point(&self) -> ExecPoint {
        self.point
    }

    /// Records logged so far (the next record's index).
    pub fn log_len(&self) -> u64 {
        self.next_index
    }

    /// Outputs produced and not yet handed out by [`Primary::next_release`].
    pub fn held_outputs(&self) -> usize {
        self.held.len()
    }

    /// Records logged and not yet acknowledged by the backup.
    pub fn unacknowledged(&self) -> u64 {
        self.next_index.saturating_sub(self.link.acked())
    }

    /// Record a time/random read (at its exit) or an interrupt/input (at its injection point).
    /// On [`PrimaryError::Backpressure`] the guest must not see the input yet: retry later.
    pub fn on_nondeterministic_input(
        &mut self,
        point: ExecPoint,
        event: Event,
    ) -> Result<(), PrimaryError> {
        match event.class() {
            EventClass::Sync | EventClass::Async => {}
            class => return Err(PrimaryError::NotAnInput { class }),
        }
        // Device input was taken from its device: until the backup holds it, no other copy
        // could give the guest the same bytes, so it leaves at once rather than with the frame.
        let taken_from_device = matches!(event, Event::Input { .. });
        self.check_point(point)?;
        self.log(point, event, true)?;
        self.point = point;
        self.reported = true;
        if taken_from_device {
            self.urgent = true;
            self.flush_urgent()?;
        }
        Ok(())
    }

    /// The guest produced output with content digest `digest` at `point`; returns its sequence
    /// number. The caller keeps the output until [`Primary::next_release`] hands that number out.
    pub fn on_output(&mut self, point: ExecPoint, digest: u64) -> Result<u64, PrimaryError> {
        self.check_point(point)?;
        if self.held.is_full() {
            return Err(PrimaryError::Backpressure);
        }
        let seq = self.next_output;
        self.log(point, Event::Output { seq, digest }, true)?;
        self.point = point;
        self.reported = true;
        // Cannot fail: fullness was checked above.
        let _ = self.held.push_back(Held {
            seq,
            index: self.next_index.saturating_sub(1),
        });
        self.next_output += 1;
        self.stats.outputs += 1;
        // The output waits for the backup's ack of this record: send it now (or at the next
        // poll if the link is full).
        self.urgent = true;
        self.flush_urgent()?;
        Ok(seq)
    }

    /// The next output that may leave now, if any: the backup holds the log up to it (or this
    /// copy runs alone). Outputs come out in production order.
    pub fn next_release(&mut self) -> Option<u64> {
        let front = *self.held.front()?;
        let may_release = match self.state {
            PrimaryState::Alone => true,
            PrimaryState::Protected => {
                (front.index < self.link.acked() || self.mutants.release_before_ack)
                    && !self.unconfirmed
            }
            // The backup may be live already: nothing leaves until the arbiter has answered.
            PrimaryState::Arbitrating | PrimaryState::Stopped => false,
        };
        if !may_release {
            return None;
        }
        self.held.pop_front();
        self.released += 1;
        Some(front.seq)
    }

    /// Output `seq` has been performed: log `OutputDone` so a backup going live does not repeat it.
    pub fn output_performed(&mut self, seq: u64) -> Result<(), PrimaryError> {
        if seq != self.done {
            return Err(PrimaryError::OutputOutOfOrder {
                expected: self.done,
                got: seq,
            });
        }
        if seq >= self.released {
            return Err(PrimaryError::OutputNotReleased { seq });
        }
        self.done += 1;
        // A full link only delays the record: `poll` retries it.
        match self.flush_done() {
            Err(PrimaryError::Backpressure) => Ok(()),
            other => other,
        }?;
        self.flush_urgent()
    }

    /// The guest completed an exit (or, with a precise counter, was stopped) at `at`: later
    /// heartbeats may carry this point, which lets the backup replay up to it between inputs.
    /// Only call it with a boundary the guest has really passed: the backup will run up to it.
    pub fn boundary_reached(&mut self, at: ExecPoint) -> Result<(), PrimaryError> {
        self.check_point(at)?;
        self.point = at;
        self.reported = true;
        Ok(())
    }

    /// Advance time to `now`: absorb acks, detect, arbitrate, log pending `OutputDone` records and
    /// a heartbeat when the log has been quiet for a heartbeat period.
    ///
    /// `at` is where the caller sees the guest. It is only checked not to go backwards and is
    /// never logged: whatever the caller passes, every record `poll` writes carries the last
    /// completed boundary the engine was told about, that is the point of the last input or
    /// output recorded or the last point given to [`Primary::boundary_reached`]. A caller that
    /// passes the point of an exit still in progress therefore cannot let the backup run past an
    /// input that is then logged at the boundary the guest really stands at.
    pub fn poll(&mut self, now: u64, at: ExecPoint) -> Result<PrimaryStatus, PrimaryError> {
        self.now = now;
        self.check_point(at)?;
        // After a stall, activity the link shows is of unknown age, and after a long silence the
        // backup may be suspecting too: either way it may have won the arbiter and gone live.
        let stalled = now - self.last_poll >= self.config.suspect_after / 2;
        self.last_poll = now;
        self.link.poll(now);
        if self.state == PrimaryState::Protected {
            let health = self.detector.observe(self.link.peer_activity(), now);
            if (stalled || self.detector.silent_for(now) >= self.config.suspect_after / 2)
                && !self.mutants.skip_fence
            {
                self.unconfirmed = true;
            }
            if let Health::Suspect { .. } = health {
                self.state = if self.mutants.skip_arbitration {
                    PrimaryState::Alone
                } else {
                    PrimaryState::Arbitrating
                };
            }
        }
        if self.state == PrimaryState::Protected && self.unconfirmed {
            match self.arbiter.holder(self.config.epoch) {
                Ok(None) => self.unconfirmed = false,
                Ok(Some(Side::Primary)) => self.state = PrimaryState::Alone,
                Err(ArbiterError::Unreachable) => {}
                Ok(Some(Side::Backup)) | Err(_) => self.state = PrimaryState::Stopped,
            }
        }
        if self.state == PrimaryState::Arbitrating {
            self.state = match self.arbiter.test_and_set(self.config.epoch, Side::Primary) {
                Ok(Side::Primary) => PrimaryState::Alone,
                Err(ArbiterError::Unreachable) => PrimaryState::Arbitrating,
                Ok(Side::Backup) | Err(_) => PrimaryState::Stopped,
            };
        }
        match self.flush_done() {
            Ok(()) | Err(PrimaryError::Backpressure) => {}
            Err(e) => return Err(e),
        }
        // While sent records are unacknowledged the link is busy carrying (or retransmitting)
        // them, and heartbeats would take the room a slow link frees: wait longer then, though
        // not so long that a backup with nothing new to read starts suspecting.
        let quiet_for = if self.link.acked() < self.batch.sent() {
            (self.config.suspect_after / 2).max(self.config.heartbeat_period)
        } else {
            self.config.heartbeat_period
        };
        if self.logging() && now - self.last_send >= quiet_for {
            // The records waiting show the primary alive; with none, a heartbeat does.
            if self.batch.is_empty() {
                match self.log(self.point, Event::Heartbeat { now }, self.reported) {
                    Ok(()) => self.stats.heartbeats += 1,
                    Err(PrimaryError::Backpressure) => {}
                    Err(e) => return Err(e),
                }
            }
            self.urgent = true;
        }
        self.flush_urgent()?;
        Ok(PrimaryStatus {
            state: self.state,
            throttle: self.lagging(),
        })
    }

    /// Whether every output produced has been released, performed, and its `OutputDone` logged,
    /// and a backup still protecting has acknowledged the whole log: a primary whose guest
    /// stopped may stop once it is. (A record sent is not yet a record held: over a network the
    /// last `OutputDone`s would die with the primary's board, and the backup would go live and
    /// print those outputs again.)
    pub fn settled(&self) -> bool {
        self.held.is_empty()
            && self.done == self.released
            && self.done_logged == self.done
            && (self.batch.is_empty() || !self.logging())
            && (self.state != PrimaryState::Protected || self.link.acked() >= self.batch.sent())
    }

    /// The guest stopped at the exit at `at`: a heartbeat there lets the backup replay up to the
    /// same exit (it never runs past the last point it holds).
    pub fn log_stop(&mut self, at: ExecPoint) -> Result<(), PrimaryError> {
        self.check_point(at)?;
        self.log(at, Event::Heartbeat { now: self.now }, true)?;
        self.stats.heartbeats += 1;
        self.point = at;
        self.reported = true;
        self.urgent = true;
        self.flush_urgent()
    }

    fn logging(&self) -> bool {
        matches!(
            self.state,
            PrimaryState::Protected | PrimaryState::Arbitrating
        )
    }

    fn lagging(&mut self) -> bool {
        match self.state {
            PrimaryState::Alone => false,
            PrimaryState::Stopped => true,
            PrimaryState::Protected | PrimaryState::Arbitrating => {
                // Records not sent yet are no lag of the backup's.
                let (acked, sent) = (self.link.acked(), self.batch.sent());
                if acked != self.last_acked || acked >= sent {
                    self.last_acked = acked;
                    self.acks_moved_at = self.now;
                }
                self.state == PrimaryState::Arbitrating
                    || sent.saturating_sub(acked) > self.config.max_lag_records
                    || self.now - self.acks_moved_at >= self.config.max_lag_time
            }
        }
    }

    fn check_point(&self, point: ExecPoint) -> Result<(), PrimaryError> {
        if self.state == PrimaryState::Stopped {
            return Err(PrimaryError::Stopped);
        }
        if point.position() < self.point.position() {
            return Err(PrimaryError::PointWentBackwards {
                last: self.point.position(),
                given: point.position(),
            });
        }
        Ok(())
    }

    fn flush_done(&mut self) -> Result<(), PrimaryError> {
        if !self.logging() {
            self.done_logged = self.done;
        }
        while self.done_logged < self.done {
            self.log(
                self.point,
                Event::OutputDone {
                    seq: self.done_logged,
                },
                self.reported,
            )?;
            self.done_logged += 1;
            // Sent at once, as the output was performed: a backup going live repeats only the
            // outputs whose `OutputDone` it lacks.
            self.urgent = true;
        }
        Ok(())
    }

    /// Append a record to the open frame, sending the frame first when it is full. `known`:
    /// `point` is one the caller reported, not the start before any (whose PC and registers the
    /// engine never saw).
    fn log(&mut self, point: ExecPoint, event: Event, known: bool) -> Result<(), PrimaryError> {
        match self.state {
            PrimaryState::Stopped => Err(PrimaryError::Stopped),
            PrimaryState::Alone => Ok(()),
            PrimaryState::Protected | PrimaryState::Arbitrating => {
                match self.batch.push(&point, &event, known) {
                    Err(BatchError::Full) => {
                        self.send()?;
                        self.batch.push(&point, &event, known)
                    }
                    other => other,
                }
                .map_err(|e| match e {
                    // Cannot happen: an empty frame has room for any record.
                    BatchError::Full => PrimaryError::Encode(RecordError::NoRoom),
                    BatchError::Record(e) => PrimaryError::Encode(e),
                })?;
                self.next_index += 1;
                self.stats.records += 1;
                Ok(())
            }
        }
    }

    /// Send the open frame if a record in it must leave now; a full link only delays it (the
    /// next `poll` tries again).
    fn flush_urgent(&mut self) -> Result<(), PrimaryError> {
        if !self.urgent || !self.logging() {
            return Ok(());
        }
        match self.send() {
            Ok(()) => {
                self.urgent = false;
                Ok(())
            }
            Err(PrimaryError::Backpressure) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Put the open frame on the link.
    fn send(&mut self) -> Result<(), PrimaryError> {
        let Some(frame) = self.batch.seal() else {
            return Ok(());
        };
        let len = frame.len() as u64;
        self.link.send(frame).map_err(|e| match e {
            LinkError::Full => PrimaryError::Backpressure,
            e => PrimaryError::Link(e),
        })?;
        self.batch.clear();
        self.last_send = self.now;
        self.stats.frames += 1;
        self.stats.log_bytes += len;
        Ok(())
    }
}
