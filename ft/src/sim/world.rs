//! One simulated run: primary, backup, arbiter, log link, client and timers, stepped in a single
//! thread in a fixed order so that a seed reproduces the run exactly.

use super::guest::{Exit, Guest};
use super::net::Net;
use super::oracle::{self, Cut, Evidence, Generation, Seen, Takeover, Violation};
use super::rng::Rng;
use super::scenario::{CrashPoint, LinkKind, Scenario, Who};
use crate::arbiter::{Arbiter, ArbiterError, SharedWordArbiter, Side};
use crate::backup::{Backup, BackupConfig, BackupError, BackupState, Due, SyncRead};
use crate::frame::{FrameReader, MAX_RECORDS};
use crate::latency::Latencies;
use crate::link::datagram::{DatagramConfig, DatagramReceiver, DatagramSender};
use crate::link::{LinkError, LinkStats, LogReceiver, LogSender};
use crate::primary::{Primary, PrimaryConfig, PrimaryError, PrimaryState};
use crate::record::{Event, InputData, Record};
use crate::reprotect::{DirtyTracker, Reprotect, ReprotectAction, ReprotectConfig};
use std::boxed::Box;
use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::collections::VecDeque;
use std::format;
use std::rc::Rc;
use std::string::String;
use std::sync::atomic::AtomicU64;
use std::vec::Vec;

/// Guest exits the backup may replay per step (replay runs a little faster than recording).
const REPLAY_BURST: usize = 2;
/// Inputs a copy queues before dropping more (inputs in flight may be lost).
const MAX_PENDING: usize = 64;
/// The timer's interrupt vector.
const TIMER_VECTOR: u32 = 32;
/// Longest drain after the scenario's end (ns): in-flight log, acks and outputs settle meanwhile.
const DRAIN_LIMIT: u64 = 5_000_000;
/// Guest memory of the model, in pages, for re-protection's copy and dirty tracking.
const GUEST_PAGES: u64 = 256;

/// The model guest's memory as re-protection sees it: which pages it dirtied since tracking began.
struct Pages {
    dirty: BTreeSet<u64>,
}

impl DirtyTracker for Pages {
    fn page_count(&self) -> u64 {
        GUEST_PAGES
    }
    fn start_tracking(&mut self) {
        self.dirty.clear();
    }
    fn take_dirty(&mut self, out: &mut [u64]) -> usize {
        let taken: Vec<u64> = self.dirty.iter().take(out.len()).copied().collect();
        for (slot, page) in out.iter_mut().zip(&taken) {
            *slot = *page;
            self.dirty.remove(page);
        }
        taken.len()
    }
    fn dirty_count(&self) -> u64 {
        self.dirty.len() as u64
    }
}

/// One log link's two ends, and the network under it (datagram links).
type Link<S, R> = (S, R, Option<Rc<RefCell<Net>>>);

/// Times of a failover (ns of simulated time).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Failover {
    /// When the primary died (if it did).
    pub crashed_at: Option<u64>,
    /// When the backup first suspected the primary.
    pub suspected_at: Option<u64>,
    /// When the backup won arbitration.
    pub won_at: Option<u64>,
    /// When the backup went live (replay finished, held outputs performed).
    pub live_at: Option<u64>,
}

/// How long the output rule held the primary's outputs, from production to release (ns).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Release {
    /// Outputs the primary released while protected.
    pub outputs: u64,
    /// Median hold (within the histogram's 12.5 %).
    pub p50: u64,
    /// 99th percentile hold.
    pub p99: u64,
    /// Longest hold.
    pub max: u64,
}

/// What a run measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// The copy serving at the end, if any.
    pub survivor: Option<Who>,
    /// Failover timings, when the backup went live.
    pub failover: Failover,
    /// Outputs the client received (duplicates included).
    pub outputs_seen: usize,
    /// Outputs the client received twice.
    pub duplicates: usize,
    /// The backup reported a divergence.
    pub divergence_reported: bool,
    /// Records the primary logged, and of those heartbeats and input/interrupt/read records.
    pub records: u64,
    /// See `records`.
    pub heartbeats: u64,
    /// See `records`.
    pub input_records: u64,
    /// Encoded log bytes.
    pub log_bytes: u64,
    /// Log link counters, primary side.
    pub link: LinkStats,
    /// Log link counters, backup side (the last pair's).
    pub backup_link: LinkStats,
    /// Records the last pair's backup received: the log's throughput over the link.
    pub records_delivered: u64,
    /// The output rule's hold on the outputs of protected primaries.
    pub release: Release,
    /// Frames the backup's record layer refused.
    pub rejected_frames: u64,
    /// Simulated time covered (ns).
    pub sim_time: u64,
    /// Backups that went live, and re-protections completed (new pairs started).
    pub go_lives: u32,
    /// See `go_lives`.
    pub reprotections: u32,
    /// The drain ended with nothing in flight (otherwise the link was still catching up).
    pub settled: bool,
}

/// Wiretap on the primary's link: keeps the log as sent, for the oracle.
struct Tap<S> {
    inner: S,
    log: Rc<RefCell<Vec<Record>>>,
    enabled: bool,
    /// Decodes what was sent, frame after frame, as a backup does.
    reader: FrameReader,
}

impl<S: LogSender> LogSender for Tap<S> {
    fn send(&mut self, bytes: &[u8]) -> Result<(), LinkError> {
        self.inner.send(bytes)?;
        let mut frame = heapless::Deque::<Record, MAX_RECORDS>::new();
        if self.enabled && self.reader.accept(bytes, &mut frame).is_ok() {
            self.log.borrow_mut().extend(frame);
        }
        Ok(())
    }
    fn acked(&self) -> u64 {
        self.inner.acked()
    }
    fn peer_activity(&self) -> u64 {
        self.inner.peer_activity()
    }
    fn poll(&mut self, now: u64) {
        self.inner.poll(now)
    }
    fn stats(&self) -> LinkStats {
        self.inner.stats()
    }
}

/// An arbiter both copies reach unless the scenario cuts their connection to it.
struct SimArbiter {
    word: Rc<AtomicU64>,
    reachable: Rc<Cell<bool>>,
}

impl Arbiter for SimArbiter {
    fn test_and_set(&mut self, epoch: u32, me: Side) -> Result<Side, ArbiterError> {
        if !self.reachable.get() {
            return Err(ArbiterError::Unreachable);
        }
        SharedWordArbiter::new(&self.word).test_and_set(epoch, me)
    }

    fn holder(&mut self, epoch: u32) -> Result<Option<Side>, ArbiterError> {
        if !self.reachable.get() {
            return Err(ArbiterError::Unreachable);
        }
        SharedWordArbiter::new(&self.word).holder(epoch)
    }
}

#[derive(Default)]
struct Node {
    crashed: bool,
    stopped: bool,
    live: bool,
    pending: VecDeque<Event>,
    /// Outputs produced and not yet performed, by engine sequence number: (output number, content).
    held: Vec<(u64, u64)>,
    next_tick: u64,
}

struct World<S: LogSender, R: LogReceiver> {
    sc: Scenario,
    now: u64,
    rng: Rng,
    net: Option<Rc<RefCell<Net>>>,
    /// Links for the pairs re-protection creates, in order.
    spare_links: VecDeque<Link<S, R>>,
    word: Rc<AtomicU64>,
    /// The copy number of the current primary (its backup is the next number).
    copy: u32,
    reprotections: u32,
    go_lives: u32,
    /// When the live copy starts cloning a new backup, once it runs alone.
    reprotect_at: Option<u64>,
    reprotect: Option<(Reprotect, Pages)>,
    /// The live copy is paused for the final copy of re-protection.
    clone_paused: bool,
    /// The guest as copying began, kept by the `stale_clone` mutant.
    stale: Option<Guest>,
    /// When the current primary of a re-protected pair crashes.
    next_crash_at: Option<u64>,
    cuts: Vec<Cut>,
    takeovers: Vec<Takeover>,
    /// The scenario's replay bug has been applied (once per run).
    perturbed: bool,
    /// When the backup of the current pair went live.
    live_at: Option<u64>,
    /// When the current primary produced each output, by engine sequence number.
    produced_at: Vec<u64>,
    /// How long the output rule held each output the primary released.
    release: Latencies,
    log: Rc<RefCell<Vec<Record>>>,
    p_reach: Rc<Cell<bool>>,
    b_reach: Rc<Cell<bool>>,
    primary: Primary<Tap<S>, SimArbiter>,
    backup: Backup<R, SimArbiter>,
    pg: Guest,
    bg: Guest,
    p: Node,
    b: Node,
    seen: Vec<Seen>,
    /// Go-live outputs held back by the `late_go_live_outputs` mutant.
    late: Vec<Seen>,
    next_request: u64,
    failover: Failover,
    backup_replayed_exits: Option<u64>,
    divergence_reported: bool,
    /// What the backup reported, for the oracle.
    divergence: Option<String>,
    diverged_injected: bool,
    /// After the scenario's end: no new requests, crashes or replay bugs.
    draining: bool,
    /// When the primary won arbitration and ran alone.
    alone_at: Option<u64>,
    /// The latest time the surviving copy may take over after a crash, if one happened.
    takeover_deadline: Option<u64>,
}

/// Run `sc` to the end and check every invariant.
pub fn run(sc: &Scenario) -> Result<Outcome, Violation> {
    let mut rng = Rng::new(sc.seed.wrapping_mul(0x9E37_79B9));
    let pairs = 1 + sc.reprotect.map_or(0, |r| r.cycles as usize);
    match sc.link {
        LinkKind::Ring => {
            let mut rings: Vec<crate::link::ring::Ring<64>> =
                (0..pairs).map(|_| Default::default()).collect();
            let links = rings
                .iter_mut()
                .map(|ring| {
                    let (tx, rx) = ring.split();
                    (tx, rx, None)
                })
                .collect();
            World::new(sc, links, rng).run()
        }
        LinkKind::Datagram => {
            // One network for every pair, as between two boards: datagrams an earlier pair left
            // in flight reach the later pair's link, which must drop them by their epoch.
            let net = Net::new(sc.faults, rng.fork());
            let links = (0..pairs)
                .map(|pair| {
                    // Pair number `pair`, from 0, runs in protection epoch `pair + 1` (see
                    // `World::new` and `reprotection`).
                    let config = DatagramConfig::new(pair as u32 + 1, sc.retransmit_after);
                    let (a, b) = super::net::Port::pair(&net);
                    let tx = DatagramSender::<_, 32>::new(a, config);
                    let rx = DatagramReceiver::<_, 32>::new(b, config);
                    (tx, rx, Some(net.clone()))
                })
                .collect();
            World::new(sc, links, rng).run()
        }
    }
}

/// A primary and a backup for protection epoch `epoch`, starting at `now`.
fn pair<S: LogSender, R: LogReceiver>(
    sc: &Scenario,
    (tx, rx): (S, R),
    word: &Rc<AtomicU64>,
    (p_reach, b_reach): (&Rc<Cell<bool>>, &Rc<Cell<bool>>),
    log: &Rc<RefCell<Vec<Record>>>,
    epoch: u32,
    now: u64,
) -> (Primary<Tap<S>, SimArbiter>, Backup<R, SimArbiter>) {
    let mut primary = Primary::new(
        Tap {
            inner: tx,
            log: log.clone(),
            enabled: sc.keep_history,
            reader: FrameReader::for_epoch(epoch),
        },
        SimArbiter {
            word: word.clone(),
            reachable: p_reach.clone(),
        },
        PrimaryConfig {
            epoch,
            heartbeat_period: sc.heartbeat,
            suspect_after: sc.suspect_after,
            max_lag_records: 512,
            max_lag_time: sc.suspect_after,
        },
        now,
    );
    primary.set_mutants(sc.mutants);
    let mut backup = Backup::new(
        rx,
        SimArbiter {
            word: word.clone(),
            reachable: b_reach.clone(),
        },
        BackupConfig {
            epoch,
            suspect_after: sc.suspect_after,
            ack_period: sc.heartbeat,
        },
        now,
    );
    backup.set_mutants(sc.mutants);
    (primary, backup)
}

impl<S: LogSender, R: LogReceiver> World<S, R> {
    fn new(sc: &Scenario, mut links: VecDeque<Link<S, R>>, rng: Rng) -> Box<Self> {
        let word = Rc::new(AtomicU64::new(0));
        let p_reach = Rc::new(Cell::new(true));
        let b_reach = Rc::new(Cell::new(true));
        let log = Rc::new(RefCell::new(Vec::new()));
        // `run` makes one link per pair, the first for this one.
        let Some((tx, rx, net)) = links.pop_front() else {
            unreachable!("run makes at least one link")
        };
        let (primary, backup) = pair(sc, (tx, rx), &word, (&p_reach, &b_reach), &log, 1, 0);
        Box::new(World {
            sc: sc.clone(),
            now: 0,
            rng,
            net,
            spare_links: links,
            word,
            copy: 0,
            reprotections: 0,
            go_lives: 0,
            reprotect_at: None,
            reprotect: None,
            clone_paused: false,
            stale: None,
            next_crash_at: None,
            cuts: Vec::new(),
            takeovers: Vec::new(),
            perturbed: false,
            live_at: None,
            produced_at: Vec::new(),
            release: Latencies::new(),
            log,
            p_reach,
            b_reach,
            primary,
            backup,
            pg: Guest::new(sc.keep_history, sc.precise),
            bg: Guest::new(sc.keep_history, sc.precise),
            p: Node::default(),
            b: Node::default(),
            seen: Vec::new(),
            late: Vec::new(),
            next_request: sc.workload.request_every,
            failover: Failover::default(),
            backup_replayed_exits: None,
            divergence_reported: false,
            divergence: None,
            diverged_injected: false,
            draining: false,
            alone_at: None,
            takeover_deadline: None,
        })
    }

    fn run(&mut self) -> Result<Outcome, Violation> {
        while self.now < self.sc.duration {
            self.step()?;
            self.now += self.sc.step;
        }
        // The oracle judges a settled run: what was in flight at the end has either arrived or
        // is lost for good, and every output the survivor produced has had its chance to leave.
        // The client goes quiet meanwhile, and no crash or replay bug starts; timers keep ticking
        // (a guest halted with replies owed needs a tick to send them).
        self.draining = true;
        let limit = self.sc.duration + DRAIN_LIMIT;
        while self.now < limit && !self.settled() {
            self.step()?;
            self.now += self.sc.step;
        }
        let settled = self.settled();
        self.finish(settled)
    }

    /// The copy serving now, if any.
    fn survivor(&self) -> Option<Who> {
        if self.b.live && !self.b.crashed {
            Some(Who::Backup)
        } else if !self.p.crashed && !self.p.stopped {
            Some(Who::Primary)
        } else {
            None
        }
    }

    /// Nothing left in flight: a crashed copy has been replaced (or cannot be), and the
    /// survivor holds no output back (as a protected primary, the backup holds its whole log).
    /// Judged by the engine's state, not by what the client saw: that is the oracle's business.
    fn settled(&self) -> bool {
        let backup_may_take_over = !(self.b.live
            || self.b.crashed
            || self.b.stopped
            || self.divergence_reported
            || self.diverged_injected);
        if self.p.crashed && backup_may_take_over {
            return false;
        }
        match self.survivor() {
            Some(Who::Primary) => {
                self.primary.held_outputs() == 0
                    && (self.primary.state() == PrimaryState::Alone
                        || self.primary.unacknowledged() == 0)
            }
            Some(Who::Backup) | None => true,
        }
    }

    /// The latest time `survivor` may take over after the other copy crashed at `crashed_at`:
    /// the last frames in flight, the suspicion timeout, the replay still owed at the crash
    /// (`replay_items` exits, stops and records), and any stall or arbiter cut meanwhile.
    fn takeover_deadline(&self, survivor: Who, crashed_at: u64, replay_items: u64) -> u64 {
        let in_flight = match self.sc.link {
            LinkKind::Ring => 0,
            LinkKind::Datagram => 5 * self.sc.faults.delay_max,
        };
        let catch_up = replay_items.div_ceil(REPLAY_BURST as u64) * self.sc.step;
        let mut deadline = crashed_at + in_flight + self.sc.suspect_after + catch_up;
        let arbiter_bit = match survivor {
            Who::Primary => 2,
            Who::Backup => 4,
        };
        let cut = self
            .sc
            .partition
            .filter(|p| p.mask & arbiter_bit != 0)
            .map(|p| (p.from, p.until));
        let stall = self
            .sc
            .pause
            .filter(|p| p.who == survivor)
            .map(|p| (p.from, p.until));
        let mut windows: Vec<(u64, u64)> = [cut, stall].into_iter().flatten().collect();
        // In time order: a window postponing the takeover may bring a later one into play.
        windows.sort_unstable();
        for (from, until) in windows {
            if from <= deadline && until > crashed_at {
                deadline += until - from;
            }
        }
        deadline + 2 * self.sc.step
    }

    fn engine_error(&self, what: impl core::fmt::Debug) -> Violation {
        Violation::EngineError {
            at: self.now,
            what: format!("{what:?}"),
        }
    }

    fn step(&mut self) -> Result<(), Violation> {
        let now = self.now;
        let cut = self
            .sc
            .partition
            .filter(|p| (p.from..p.until).contains(&now))
            .map_or(0, |p| p.mask);
        if let Some(net) = &self.net {
            let mut net = net.borrow_mut();
            net.set_now(now);
            net.partitioned = cut & 1 != 0;
        }
        self.p_reach.set(cut & 2 == 0);
        self.b_reach.set(cut & 4 == 0);
        self.client();
        self.timers();
        if let Some(crash) = self.sc.crash
            && self.copy == 0
            && !self.draining
            && matches!(crash.point, CrashPoint::At(t) if t <= now && now < t + self.sc.step)
        {
            self.crash(crash.who);
        }
        if self.next_crash_at.is_some_and(|t| t <= now) {
            self.next_crash_at = None;
            self.crash(Who::Primary);
        }
        self.reprotection()?;
        if !self.paused(Who::Primary) && !self.p.crashed && !self.p.stopped {
            self.step_primary()?;
        }
        if !self.paused(Who::Backup) && !self.b.crashed {
            if self.b.live {
                self.step_live_backup();
            } else if !self.b.stopped {
                self.step_backup()?;
            }
        }
        let primary_live = !self.p.crashed && self.primary.state() == PrimaryState::Alone;
        if primary_live && self.alone_at.is_none() {
            self.alone_at = Some(now);
        }
        let backup_live = !self.b.crashed && self.b.live;
        if primary_live && backup_live {
            return Err(Violation::TwoLivePrimaries { at: now });
        }
        Ok(())
    }

    fn paused(&self, who: Who) -> bool {
        self.sc
            .pause
            .is_some_and(|p| p.who == who && (p.from..p.until).contains(&self.now))
    }

    /// Kill one copy. A crash is a single failure: it is skipped once protection is already lost
    /// (the other copy is out, or this one won arbitration), since nothing survives a double failure.
    fn crash(&mut self, who: Who) -> bool {
        let protection_lost = match who {
            Who::Primary => {
                self.b.crashed
                    || self.b.stopped
                    || self.b.live
                    || self.divergence_reported
                    || self.primary.state() == PrimaryState::Alone
            }
            Who::Backup => {
                self.p.crashed
                    || self.p.stopped
                    || self.b.live
                    || self.backup.state() == BackupState::CatchingUp
            }
        };
        if protection_lost || self.draining {
            return false;
        }
        let (survivor, replay_items) = match who {
            Who::Primary => {
                self.p.crashed = true;
                self.failover.crashed_at.get_or_insert(self.now);
                // Each exit owed may need a precise stop before it, each record a delivery.
                let exits = self.pg.det_exits().saturating_sub(self.bg.det_exits());
                let records = self.primary.log_len() - self.backup.consumed();
                (Who::Backup, 2 * exits + records)
            }
            Who::Backup => {
                self.b.crashed = true;
                (Who::Primary, 0)
            }
        };
        self.takeover_deadline = Some(self.takeover_deadline(survivor, self.now, replay_items));
        true
    }

    fn crash_due(&self, point: CrashPoint) -> bool {
        // Output numbers restart with each pair: the scenario's edges are the first pair's.
        self.copy == 0
            && self
                .sc
                .crash
                .is_some_and(|c| c.who == Who::Primary && c.point == point)
    }

    /// The client sends requests to whichever copy serves now; requests to a dead copy are lost.
    fn client(&mut self) {
        let w = self.sc.workload;
        let stopped = self.draining || self.sc.client_stops_at.is_some_and(|t| self.now >= t);
        if w.request_every == 0 || self.now < self.next_request || stopped {
            return;
        }
        self.next_request = self.now + self.rng.between(1, 2 * w.request_every);
        let mut bytes = [0u8; crate::record::MAX_INPUT];
        for chunk in bytes.chunks_mut(8) {
            chunk.copy_from_slice(&self.rng.next_u64().to_le_bytes()[..chunk.len()]);
        }
        // Cannot fail: the slice is at most MAX_INPUT long.
        let data =
            InputData::from_slice(&bytes[..w.request_bytes.min(bytes.len())]).unwrap_or_default();
        let event = Event::Input { device: 1, data };
        let node = if self.b.live && !self.b.crashed {
            &mut self.b
        } else if !self.p.crashed && !self.p.stopped {
            &mut self.p
        } else {
            return;
        };
        if node.pending.len() < MAX_PENDING {
            node.pending.push_back(event);
        }
    }

    /// Each running copy's own timer ticks; a replaying backup gets its ticks from the log.
    fn timers(&mut self) {
        let (tick, now) = (self.sc.workload.tick, self.now);
        let backup_live = self.b.live;
        for (node, runs_natively) in [(&mut self.p, true), (&mut self.b, backup_live)] {
            if runs_natively && now >= node.next_tick {
                node.next_tick = now + tick;
                if node.pending.len() < MAX_PENDING {
                    node.pending.push_back(Event::Interrupt {
                        vector: TIMER_VECTOR,
                    });
                }
            }
        }
    }

    fn step_primary(&mut self) -> Result<(), Violation> {
        // The guest stands at a completed boundary; poll is handed the point of the exit it is
        // about to take, which the engine must not log (a heartbeat there would be ahead of the
        // inputs delivered below).
        let polled = match self.primary.boundary_reached(self.pg.point()) {
            Ok(()) => self.primary.poll(self.now, self.pg.peek_exit().1),
            Err(e) => Err(e),
        };
        let status = match polled {
            Ok(status) => status,
            Err(PrimaryError::Stopped) => {
                self.p.stopped = true;
                return Ok(());
            }
            Err(e) => return Err(self.engine_error(e)),
        };
        if status.state == PrimaryState::Stopped {
            self.p.stopped = true;
            return Ok(());
        }
        while let Some(seq) = self.primary.next_release() {
            if self.crash_due(CrashPoint::AckedNotReleased(seq)) && self.crash(Who::Primary) {
                return Ok(());
            }
            let (out_seq, value) = self.p.held[seq as usize];
            if self.primary.state() == PrimaryState::Protected {
                self.release
                    .record(self.now - self.produced_at[seq as usize]);
            }
            self.seen.push(Seen {
                out_seq,
                value,
                copy: self.copy,
                at_go_live: false,
            });
            if self.crash_due(CrashPoint::ReleasedNotDone(seq)) && self.crash(Who::Primary) {
                return Ok(());
            }
            self.primary
                .output_performed(seq)
                .map_err(|e| self.engine_error(e))?;
        }
        if status.throttle {
            return Ok(());
        }
        while let Some(event) = self.p.pending.front() {
            match self
                .primary
                .on_nondeterministic_input(self.pg.point(), event.clone())
            {
                Ok(()) => {
                    self.pg.deliver(event);
                    self.p.pending.pop_front();
                }
                Err(PrimaryError::Backpressure) => break,
                Err(e) => return Err(self.engine_error(e)),
            }
        }
        if self.pg.halted() {
            return Ok(());
        }
        // With a precise counter the step may end before the next exit: an asynchronous exit
        // stops the guest there, and the next step logs and delivers at that point.
        if self.sc.precise && self.rng.chance(0.5) {
            let fraction = self.rng.below(1_000) as f64 / 1_000.0;
            if let Some(branches) = self.pg.stop_point(fraction) {
                self.pg.stop_at(branches);
                return Ok(());
            }
        }
        let (kind, point) = self.pg.peek_exit();
        let logged = match kind {
            Exit::TimeRead | Exit::RandomRead => {
                let (value, event) = if kind == Exit::TimeRead {
                    (self.now, Event::TimeRead { value: self.now })
                } else {
                    let value = self.rng.next_u64();
                    (value, Event::RandomRead { value })
                };
                self.primary
                    .on_nondeterministic_input(point, event)
                    .map(|()| value)
            }
            Exit::Output => self.primary.on_output(point, self.pg.output_digest()),
            Exit::Halt | Exit::Plain => Ok(0),
        };
        match logged {
            Ok(value) => {
                if let Some(output) = self.pg.commit_exit(value) {
                    let seq = value;
                    if seq != self.p.held.len() as u64 {
                        return Err(self.engine_error(format!("output seq {seq} out of step")));
                    }
                    self.p.held.push(output);
                    self.produced_at.push(self.now);
                    if self.crash_due(CrashPoint::SentNotAcked(seq)) {
                        self.crash(Who::Primary);
                    }
                }
                Ok(())
            }
            Err(PrimaryError::Backpressure) => Ok(()),
            Err(PrimaryError::Stopped) => {
                self.p.stopped = true;
                Ok(())
            }
            Err(e) => Err(self.engine_error(e)),
        }
    }

    fn step_backup(&mut self) -> Result<(), Violation> {
        let state = self
            .backup
            .poll(self.now)
            .map_err(|e| self.engine_error(e))?;
        if state != BackupState::Replaying && self.failover.suspected_at.is_none() {
            self.failover.suspected_at = Some(self.now);
        }
        if state == BackupState::CatchingUp && self.failover.won_at.is_none() {
            self.failover.won_at = Some(self.now);
        }
        match state {
            BackupState::Stopped => {
                self.b.stopped = true;
                return Ok(());
            }
            BackupState::Diverged => return Ok(()),
            _ => {}
        }
        if !self.perturbed && !self.draining && self.sc.diverge_at.is_some_and(|t| self.now >= t) {
            self.perturbed = true;
            self.diverged_injected = true;
            self.bg.perturb();
        }
        for _ in 0..REPLAY_BURST {
            let due = self.backup.next_event_due(self.bg.point());
            match due {
                Ok(Due::Deliver(event)) => self.bg.deliver(&event),
                Ok(Due::Run { stop_at }) => {
                    if self.bg.halted() {
                        // Only a perturbed guest can halt before a point the primary's guest
                        // reached in the same interval: it waits there, stuck, like hardware would.
                        if self.diverged_injected && stop_at.is_some() {
                            break;
                        }
                        return Err(self.engine_error("run granted to a halted guest"));
                    }
                    if let Some(branches) = stop_at
                        .filter(|p| p.det_exits == self.bg.det_exits())
                        .and_then(|p| p.precise)
                        .filter(|&b| self.bg.can_stop_at(b))
                    {
                        self.bg.stop_at(branches);
                        continue;
                    }
                    let (kind, point) = self.bg.peek_exit();
                    let value = match kind {
                        Exit::TimeRead => self.backup.on_sync_read(point, SyncRead::Time),
                        Exit::RandomRead => self.backup.on_sync_read(point, SyncRead::Random),
                        Exit::Output => self.backup.on_output(point, self.bg.output_digest()),
                        Exit::Halt | Exit::Plain => Ok(0),
                    };
                    match value {
                        Ok(value) => {
                            if let Some(output) = self.bg.commit_exit(value) {
                                self.b.held.push(output);
                            }
                        }
                        Err(e) => return self.replay_error(e),
                    }
                }
                Ok(Due::Wait) => break,
                Ok(Due::GoLive {
                    perform_from,
                    perform_to,
                }) => {
                    self.go_live(perform_from, perform_to);
                    break;
                }
                Err(e) => return self.replay_error(e),
            }
        }
        Ok(())
    }

    fn replay_error(&mut self, e: BackupError) -> Result<(), Violation> {
        match e {
            BackupError::Diverged(d) => {
                self.divergence_reported = true;
                self.divergence = Some(format!("{d:?}"));
                Ok(())
            }
            e => Err(self.engine_error(e)),
        }
    }

    fn go_live(&mut self, from: u64, to: u64) {
        for seq in from..to {
            let (out_seq, value) = self.b.held[seq as usize];
            let seen = Seen {
                out_seq,
                value,
                copy: self.copy + 1,
                at_go_live: true,
            };
            if self.sc.mutants.late_go_live_outputs {
                self.late.push(seen);
            } else {
                self.seen.push(seen);
            }
        }
        let done = self.log.borrow()
            [..(self.backup.received() as usize).min(self.log.borrow().len())]
            .iter()
            .filter_map(|r| match r.event {
                Event::OutputDone { seq } => self.p.held.get(seq as usize).map(|&(out, _)| out),
                _ => None,
            })
            .collect();
        self.cuts.push(Cut {
            copy: self.copy + 1,
            done,
        });
        self.go_lives += 1;
        self.live_at = Some(self.now);
        self.b.live = true;
        self.b.next_tick = self.now;
        self.failover.live_at.get_or_insert(self.now);
        self.backup_replayed_exits = Some(self.bg.det_exits());
    }

    /// A backup gone live runs the guest natively and performs outputs directly.
    fn step_live_backup(&mut self) {
        if self.clone_paused {
            return;
        }
        while let Some(event) = self.b.pending.pop_front() {
            self.bg.deliver(&event);
        }
        if self.bg.halted() {
            return;
        }
        if let Some((_, pages)) = &mut self.reprotect {
            pages
                .dirty
                .insert(crate::sim::rng::mix(self.bg.det_exits()) % GUEST_PAGES);
        }
        let (kind, _) = self.bg.peek_exit();
        let value = match kind {
            Exit::TimeRead => self.now,
            Exit::RandomRead => self.rng.next_u64(),
            _ => 0,
        };
        if let Some((out_seq, value)) = self.bg.commit_exit(value) {
            self.seen.push(Seen {
                out_seq,
                value,
                copy: self.copy + 1,
                at_go_live: false,
            });
            self.seen.append(&mut self.late);
        }
    }

    /// Re-protection: once the backup is live and the old primary gone for good, the live copy
    /// clones a new backup (memory copied while it runs, then a short pause), and a new pair
    /// starts in the next epoch with the live copy as its primary.
    fn reprotection(&mut self) -> Result<(), Violation> {
        let Some(plan) = self.sc.reprotect else {
            return Ok(());
        };
        if self.reprotect.is_none() {
            let ready = self.b.live
                && (self.p.crashed || self.p.stopped)
                && self.reprotections < plan.cycles
                && !self.draining
                && !self.spare_links.is_empty();
            if !ready {
                self.reprotect_at = None;
                return Ok(());
            }
            if self.now < *self.reprotect_at.get_or_insert(self.now + plan.start_after) {
                return Ok(());
            }
            if self.sc.mutants.stale_clone {
                self.stale = Some(self.bg.clone());
            }
            let mut pages = Pages {
                dirty: BTreeSet::new(),
            };
            let machine = Reprotect::start(
                &mut pages,
                ReprotectConfig {
                    chunk_pages: 32,
                    pause_below: 4,
                    max_rounds: 4,
                    new_epoch: self.copy + 2,
                },
            );
            self.reprotect = Some((machine, pages));
        }
        let mut buf = [0u64; 16];
        match self
            .reprotect
            .as_mut()
            .map(|(r, pages)| r.step(pages, &mut buf))
        {
            Some(ReprotectAction::Pause) => self.clone_paused = true,
            Some(ReprotectAction::Resume { epoch }) => self.resync(epoch)?,
            _ => {}
        }
        Ok(())
    }

    /// The copy is complete: the live guest goes on as the new pair's primary, an exact copy of
    /// it as the backup, over a fresh link, in protection epoch `epoch`.
    fn resync(&mut self, epoch: u32) -> Result<(), Violation> {
        let Some((tx, rx, net)) = self.spare_links.pop_front() else {
            return Err(self.engine_error("re-protection without a spare link"));
        };
        self.end_pair()?;
        if net.is_some() {
            self.net = net;
        }
        self.log = Rc::new(RefCell::new(Vec::new()));
        (self.primary, self.backup) = pair(
            &self.sc,
            (tx, rx),
            &self.word,
            (&self.p_reach, &self.b_reach),
            &self.log,
            epoch,
            self.now,
        );
        let live = std::mem::replace(&mut self.bg, Guest::new(false, false));
        self.bg = self.stale.take().unwrap_or_else(|| live.clone());
        self.pg = live;
        let mut node = std::mem::take(&mut self.b);
        node.live = false;
        // Output numbers of the engine restart with the pair.
        node.held.clear();
        self.produced_at.clear();
        self.p = node;
        self.copy += 1;
        self.reprotections += 1;
        self.backup_replayed_exits = None;
        self.divergence_reported = false;
        self.divergence = None;
        self.diverged_injected = false;
        self.alone_at = None;
        self.takeover_deadline = None;
        self.live_at = None;
        self.reprotect = None;
        self.reprotect_at = None;
        self.clone_paused = false;
        self.next_crash_at = self
            .sc
            .reprotect
            .and_then(|r| r.crash_after)
            .map(|after| self.now + after);
        Ok(())
    }

    /// A pair is replaced: check what only it can show, and keep its takeover for the end.
    fn end_pair(&mut self) -> Result<(), Violation> {
        self.takeovers.extend(self.pair_takeover());
        let log = self.log.borrow();
        oracle::check_generation(&self.generation(&log))
    }

    /// The takeover the current pair owed after a crash, if it owed one.
    fn pair_takeover(&self) -> Option<Takeover> {
        // A copy whose replay was perturbed may never be able to take over: no deadline then.
        let deadline = self.takeover_deadline.filter(|_| !self.diverged_injected)?;
        Some(Takeover {
            deadline,
            at: if self.p.crashed {
                self.live_at
            } else {
                self.alone_at
            },
        })
    }

    fn generation<'a>(&'a self, log: &'a [Record]) -> Generation<'a> {
        let replayed = self
            .backup_replayed_exits
            .unwrap_or(self.bg.det_exits())
            .min(self.bg.exit_states.len() as u64) as usize;
        Generation {
            log,
            backup_consumed: self.backup.consumed(),
            primary_exits: &self.pg.exit_states,
            backup_exits: &self.bg.exit_states[..replayed],
            divergence_reported: self.divergence.as_deref(),
            divergence_injected: self.diverged_injected,
        }
    }

    fn finish(&self, settled: bool) -> Result<Outcome, Violation> {
        let survivor = self.survivor();
        let survivor_outputs = match survivor {
            Some(Who::Backup) => Some(&self.bg.outputs[..]),
            Some(Who::Primary) => Some(&self.pg.outputs[..]),
            None => None,
        };
        let mut takeovers = self.takeovers.clone();
        takeovers.extend(self.pair_takeover());
        let log = self.log.borrow();
        oracle::check(&Evidence {
            seen: &self.seen,
            survivor_outputs,
            cuts: &self.cuts,
            settled,
            takeovers: &takeovers,
            generation: self.generation(&log),
        })?;
        let mut outs: Vec<u64> = self.seen.iter().map(|s| s.out_seq).collect();
        let outputs_seen = outs.len();
        outs.sort_unstable();
        outs.dedup();
        let stats = self.primary.stats();
        let input_records = log
            .iter()
            .filter(|r| {
                matches!(
                    r.event.class(),
                    crate::record::EventClass::Sync | crate::record::EventClass::Async
                )
            })
            .count() as u64;
        Ok(Outcome {
            survivor,
            failover: self.failover,
            outputs_seen,
            duplicates: outputs_seen - outs.len(),
            divergence_reported: self.divergence_reported,
            records: stats.records,
            heartbeats: stats.heartbeats,
            input_records,
            log_bytes: stats.log_bytes,
            link: self.primary.link_stats(),
            backup_link: self.backup.link_stats(),
            records_delivered: self.backup.received(),
            release: Release {
                outputs: self.release.samples(),
                p50: self.release.percentile(500),
                p99: self.release.percentile(990),
                max: self.release.max(),
            },
            rejected_frames: self.backup.rejects().total(),
            sim_time: self.now,
            settled,
            go_lives: self.go_lives,
            reprotections: self.reprotections,
        })
    }
}
