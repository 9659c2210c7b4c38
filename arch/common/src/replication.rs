//! Fault-tolerant partitions on two CPUs of one board: the FT engine's primary and backup as the
//! core's [`Replica`], over a log ring and an arbiter word in the ledger.
//!
//! The primary logs every time read and timer interrupt at its execution point and holds each
//! console line until the backup acknowledged the log up to it. The backup runs the same guest
//! from the same image, takes time and interrupts from the log, compares its console lines with
//! the logged ones and prints none of them, until it wins arbitration and goes live: then it
//! prints the lines the primary had not reported performed, and runs as the partition.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use heapless::Vec;
use tandem_core::config::{Ft, MAX_FT_PAIRS};
use tandem_core::devices::line::LINE_MAX;
use tandem_core::point::{ExecPoint, register_hash};
use tandem_core::replica::{Gate, Hold, Replica};
use tandem_core::report::StopReason;
use tandem_ft::arbiter::{Arbiter, SharedWordArbiter, Side};
use tandem_ft::backup::{
    Backup, BackupConfig, BackupError, BackupState, DivergenceKind, Due, SyncRead,
};
use tandem_ft::link::ring::{Ring, RingConsumer, RingProducer};
use tandem_ft::primary::{MAX_HELD_OUTPUTS, Primary, PrimaryConfig, PrimaryError, PrimaryState};
use tandem_ft::record::Event;

/// Where an injected failure kills the primary's CPU, from the boot option
/// `ft-kill=exit:N|sent:K|acked:K|printed:K`: at its Nth deterministic exit boundary, or at one
/// of the output rule's edges for output K (its record sent but not acknowledged; acknowledged
/// but not printed; printed but its `OutputDone` not logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum KillPoint {
    Exit(u64),
    Sent(u64),
    Acked(u64),
    Printed(u64),
}

/// An injected stall of the primary's CPU (`ft-stall=WHERE:N:US`, WHERE as for [`KillPoint`],
/// `exit` and `acked` only): there it does nothing for US microseconds, then carries on; stalled
/// at `acked`, it still has that output to print when it comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub struct Stall {
    pub at: KillPoint,
    pub us: u64,
}

/// The failures to inject into fault-tolerant primaries, from the boot command line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Injected {
    pub kill: Option<KillPoint>,
    pub stall: Option<Stall>,
}

impl Injected {
    pub fn from_cmdline(cmdline: &str) -> Self {
        let option = |name: &str| {
            cmdline
                .split_whitespace()
                .find_map(|arg| arg.strip_prefix(name)?.strip_prefix('='))
        };
        let point = |at: &str, n: &str| {
            let n = n.parse().ok()?;
            Some(match at {
                "exit" => KillPoint::Exit(n),
                "sent" => KillPoint::Sent(n),
                "acked" => KillPoint::Acked(n),
                "printed" => KillPoint::Printed(n),
                _ => return None,
            })
        };
        let kill =
            option("ft-kill").and_then(|v| point(v.split_once(':')?.0, v.split_once(':')?.1));
        let stall = option("ft-stall").and_then(|v| {
            let mut parts = v.split(':');
            let at = point(parts.next()?, parts.next()?)?;
            Some(Stall {
                at,
                us: parts.next()?.parse().ok()?,
            })
        });
        Self { kill, stall }
    }
}

/// Frames the ring holds in flight: the backup may lag this far before the primary waits.
pub const RING_SLOTS: usize = 256;

/// What the two copies of one fault-tolerant partition share, in the ledger: zeroed at a cold
/// boot, which is an empty ring and an unclaimed arbiter.
#[repr(C)]
pub struct PairArea {
    arbiter: AtomicU64,
    ring: Ring<RING_SLOTS>,
}

/// Every pair's shared area, placed in the ledger.
#[repr(C)]
pub struct PairAreas([PairArea; MAX_FT_PAIRS]);

type Producer = RingProducer<'static, RING_SLOTS>;
type Consumer = RingConsumer<'static, RING_SLOTS>;

/// The ends of each pair's ring, made once at bring-up and taken by the CPU of each copy.
struct Ends {
    producer: spin::Mutex<Option<Producer>>,
    consumer: spin::Mutex<Option<Consumer>>,
    arbiter: spin::Once<&'static AtomicU64>,
    /// The backup has started replaying: the primary's guest may start.
    backup_ready: AtomicBool,
}

static ENDS: [Ends; MAX_FT_PAIRS] = [const {
    Ends {
        producer: spin::Mutex::new(None),
        consumer: spin::Mutex::new(None),
        arbiter: spin::Once::new(),
        backup_ready: AtomicBool::new(false),
    }
}; MAX_FT_PAIRS];

/// Waits until pair `ft.pair`'s backup replays, so both copies start from the same state and
/// neither counts the other's start-up as silence (setting up a backup takes milliseconds of
/// virtual time under Bochs).
pub fn wait_for_backup(ft: &Ft, wait: impl Fn()) {
    while !ENDS[usize::from(ft.pair)]
        .backup_ready
        .load(Ordering::Acquire)
    {
        wait();
    }
}

/// Splits every pair's ring into its two ends (once, on the bootstrap CPU at bring-up).
pub fn publish(areas: &'static mut PairAreas) {
    for (area, ends) in areas.0.iter_mut().zip(&ENDS) {
        let PairArea { arbiter, ring } = area;
        let (producer, consumer) = ring.split();
        *ends.producer.lock() = Some(producer);
        *ends.consumer.lock() = Some(consumer);
        ends.arbiter.call_once(|| &*arbiter);
    }
}

/// The protection epoch of a pair (one per boot until re-protection makes new ones).
const EPOCH: u32 = 1;

fn timing(ft: &Ft) -> (u64, u64) {
    let heartbeat = u64::from(ft.heartbeat_us) * 1000;
    (heartbeat, heartbeat * u64::from(ft.suspect_after))
}

/// A console line's content, as the log identifies it.
fn digest(line: &[u8]) -> u64 {
    register_hash(line.iter().map(|&b| u64::from(b)))
}

/// Console lines by output number: the primary's held until released, the backup's kept until
/// go-live may need to print them.
struct Lines {
    first: u64,
    lines: heapless::Deque<Vec<u8, LINE_MAX>, MAX_HELD_OUTPUTS>,
}

impl Lines {
    const fn new() -> Self {
        Self {
            first: 0,
            lines: heapless::Deque::new(),
        }
    }

    fn free(&self) -> usize {
        self.lines.capacity() - self.lines.len()
    }

    /// Keeps line `seq`; the oldest is dropped when full (the backup only needs the newest).
    fn push(&mut self, seq: u64, line: &[u8]) {
        if self.lines.is_full() {
            self.lines.pop_front();
            self.first += 1;
        }
        if self.lines.is_empty() {
            self.first = seq;
        }
        let mut copy = Vec::new();
        // A line never exceeds LINE_MAX: the UART models and the hypercall split at it.
        let _ = copy.extend_from_slice(&line[..line.len().min(LINE_MAX)]);
        let _ = self.lines.push_back(copy);
    }

    fn get(&self, seq: u64) -> Option<&[u8]> {
        let index = usize::try_from(seq.checked_sub(self.first)?).ok()?;
        self.lines.iter().nth(index).map(|l| l.as_slice())
    }

    /// Forgets every line before `seq`.
    fn release_to(&mut self, seq: u64) {
        while self.first < seq && self.lines.pop_front().is_some() {
            self.first += 1;
        }
    }
}

/// The recording copy.
pub struct PrimaryCopy {
    engine: Primary<Producer, SharedWordArbiter<'static>>,
    held: Lines,
    failed: Option<StopReason>,
    /// The latest time the copy polled: when an injected failure kills it.
    last_poll_ns: u64,
    /// The pair's arbiter word, read again before printing an output released before a stall.
    arbiter: &'static AtomicU64,
    injected: Injected,
    stalled_until: Option<u64>,
    /// An acknowledged output the stall interrupted before it was printed.
    unprinted: Option<u64>,
    die: fn() -> !,
    /// When each held line was produced, and how long the output rule held lines: the latency
    /// it adds.
    produced_at: heapless::Deque<u64, MAX_HELD_OUTPUTS>,
    hold: HoldTime,
    /// The guest stopped: the copy only waits for its last outputs to leave.
    stopping: bool,
}

/// How long lines waited for the backup's acknowledgement.
#[derive(Default)]
struct HoldTime {
    lines: u64,
    total_ns: u64,
    max_ns: u64,
}

impl PrimaryCopy {
    /// The primary of pair `ft.pair`, starting at `now_ns`; `None` if another CPU took its end.
    /// `die` stops the CPU when `injected` says it fails.
    pub fn new(ft: &Ft, now_ns: u64, injected: Injected, die: fn() -> !) -> Option<Self> {
        let ends = &ENDS[usize::from(ft.pair)];
        let producer = ends.producer.lock().take()?;
        let word = *ends.arbiter.get()?;
        let arbiter = SharedWordArbiter::new(word);
        let (heartbeat, suspect) = timing(ft);
        let config = PrimaryConfig {
            epoch: EPOCH,
            heartbeat_period: heartbeat,
            suspect_after: suspect,
            max_lag_records: RING_SLOTS as u64 / 2,
            max_lag_time: suspect,
        };
        Some(Self {
            engine: Primary::new(producer, arbiter, config, now_ns),
            held: Lines::new(),
            failed: None,
            last_poll_ns: now_ns,
            arbiter: word,
            injected,
            stalled_until: None,
            unprinted: None,
            die,
            produced_at: heapless::Deque::new(),
            hold: HoldTime::default(),
            stopping: false,
        })
    }

    fn kill_if(&self, point: KillPoint) {
        if self.injected.kill == Some(point) {
            defmt::warn!(
                "injected: the FT primary's CPU dies at {} ({=u64} ns)",
                point,
                self.last_poll_ns
            );
            (self.die)()
        }
    }

    fn fail(&mut self, error: PrimaryError) -> Hold {
        defmt::error!("FT primary: {}", defmt::Debug2Format(&error));
        self.failed.get_or_insert(match error {
            PrimaryError::Stopped => StopReason::Superseded,
            _ => StopReason::ReplicationFailed,
        });
        Hold
    }

    /// Prints every held line the backup now covers, and reports it performed.
    fn release(&mut self, now_ns: u64, print: &mut dyn FnMut(&[u8])) {
        if self.unprinted.is_some()
            && SharedWordArbiter::new(self.arbiter).holder(EPOCH) == Ok(Some(Side::Backup))
        {
            // Released before the stall, but the backup went live meanwhile: it prints it.
            self.failed = Some(StopReason::Superseded);
            return;
        }
        let next = |copy: &mut Self| copy.unprinted.take().or_else(|| copy.engine.next_release());
        while let Some(seq) = next(self) {
            self.kill_if(KillPoint::Acked(seq));
            if let Some(stall) = self
                .injected
                .stall
                .take_if(|s| s.at == KillPoint::Acked(seq))
            {
                self.stall(now_ns, stall);
                self.unprinted = Some(seq);
                return;
            }
            if let Some(line) = self.held.get(seq) {
                print(line);
            }
            if let Some(produced) = self.produced_at.pop_front() {
                let held = now_ns.saturating_sub(produced);
                self.hold.lines += 1;
                self.hold.total_ns += held;
                self.hold.max_ns = self.hold.max_ns.max(held);
            }
            self.kill_if(KillPoint::Printed(seq));
            self.held.release_to(seq + 1);
            if let Err(e) = self.engine.output_performed(seq) {
                self.fail(e);
            }
        }
    }

    fn report_hold_time(&mut self) {
        let hold = core::mem::take(&mut self.hold);
        if hold.lines > 0 {
            defmt::info!(
                "FT output rule: {=u64} lines held {=u64} ns on average, {=u64} ns at most",
                hold.lines,
                hold.total_ns / hold.lines,
                hold.max_ns
            );
        }
    }

    fn stall(&mut self, now_ns: u64, stall: Stall) {
        defmt::warn!(
            "injected: the FT primary's CPU stalls for {=u64} us at {}",
            stall.us,
            stall.at
        );
        self.stalled_until = Some(now_ns.saturating_add(stall.us.saturating_mul(1000)));
    }

    fn step(&mut self, now_ns: u64, at: ExecPoint, print: &mut dyn FnMut(&[u8])) -> Gate {
        if let Some(stop) = self.failed {
            return Gate::Stop(stop);
        }
        if let Some(until) = self.stalled_until {
            if now_ns < until {
                return Gate::Wait;
            }
            self.stalled_until = None;
        }
        self.last_poll_ns = now_ns;
        match self.engine.poll(now_ns, at) {
            Ok(status) => {
                self.release(now_ns, print);
                if let Some(stop) = self.failed {
                    return Gate::Stop(stop);
                }
                match status.state {
                    PrimaryState::Stopped => Gate::Stop(StopReason::Superseded),
                    _ if status.throttle => Gate::Wait,
                    _ => Gate::Run,
                }
            }
            Err(e) => {
                self.fail(e);
                Gate::Stop(self.failed.unwrap_or(StopReason::ReplicationFailed))
            }
        }
    }
}

impl Replica for PrimaryCopy {
    fn logs(&self) -> bool {
        true
    }

    fn replays(&self) -> bool {
        false
    }

    fn poll(&mut self, now_ns: u64, at: ExecPoint, print: &mut dyn FnMut(&[u8])) -> Gate {
        // Heartbeats carry the last completed boundary, so the backup may run up to it.
        if let Err(e) = self.engine.boundary_reached(at) {
            self.fail(e);
        }
        if let Some(stall) = self
            .injected
            .stall
            .take_if(|s| matches!(s.at, KillPoint::Exit(n) if at.det_exits >= n))
        {
            self.stall(now_ns, stall);
        }
        if let Some(KillPoint::Exit(n)) = self.injected.kill
            && at.det_exits >= n
        {
            self.kill_if(KillPoint::Exit(n));
        }
        self.step(now_ns, at, print)
    }

    fn service(&mut self, now_ns: u64, print: &mut dyn FnMut(&[u8])) -> Result<bool, StopReason> {
        let at = self.engine.point();
        match self.step(now_ns, at, print) {
            Gate::Stop(stop) => Err(stop),
            _ if self.engine.settled() => {
                if self.stopping {
                    self.report_hold_time();
                }
                Ok(false)
            }
            _ => Ok(true),
        }
    }

    fn guest_stopped(&mut self, at: ExecPoint) {
        self.stopping = true;
        if let Err(e) = self.engine.log_stop(at) {
            self.fail(e);
        }
        let stats = self.engine.stats();
        defmt::info!(
            "FT primary log: {=u64} records, {=u64} bytes ({=u64} heartbeats, {=u64} outputs) over {=u64} exits",
            stats.records,
            stats.log_bytes,
            stats.heartbeats,
            stats.outputs,
            at.det_exits
        );
    }

    fn time_read(&mut self, at: ExecPoint, now_ns: u64) -> Result<u64, Hold> {
        match self
            .engine
            .on_nondeterministic_input(at, Event::TimeRead { value: now_ns })
        {
            Ok(()) => Ok(now_ns),
            Err(PrimaryError::Backpressure) => Err(Hold),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn interrupt(&mut self, at: ExecPoint, vector: u8) -> Result<(), Hold> {
        match self.engine.on_nondeterministic_input(
            at,
            Event::Interrupt {
                vector: vector.into(),
            },
        ) {
            Ok(()) => Ok(()),
            Err(PrimaryError::Backpressure) => Err(Hold),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn output_ready(&self, lines: usize) -> bool {
        self.held.free() >= lines
    }

    fn output(
        &mut self,
        at: ExecPoint,
        line: &[u8],
        now_ns: &dyn Fn() -> u64,
        print: &mut dyn FnMut(&[u8]),
    ) {
        // `output_ready` left room for the line; the ring may still be full, and the line is
        // already taken from the guest, so wait for the backup (or its failure) rather than
        // lose it.
        loop {
            match self.engine.on_output(at, digest(line)) {
                Ok(seq) => {
                    self.held.push(seq, line);
                    let _ = self.produced_at.push_back(now_ns());
                    self.kill_if(KillPoint::Sent(seq));
                    return;
                }
                Err(PrimaryError::Backpressure) => {
                    if let Gate::Stop(_) = self.step(now_ns(), self.engine.point(), print) {
                        return;
                    }
                }
                Err(e) => {
                    self.fail(e);
                    return;
                }
            }
        }
    }
}

/// The replaying copy.
pub struct BackupCopy {
    engine: Backup<Consumer, SharedWordArbiter<'static>>,
    pair: usize,
    ready: bool,
    /// Where the guest stopped: the copy then waits for the primary's last `OutputDone`s.
    stopped_at: Option<ExecPoint>,
    kept: Lines,
    last_time: u64,
    live: bool,
    failed: Option<StopReason>,
}

impl BackupCopy {
    /// The backup of pair `ft.pair`, starting at `now_ns`; `None` if another CPU took its end.
    pub fn new(ft: &Ft, now_ns: u64) -> Option<Self> {
        let ends = &ENDS[usize::from(ft.pair)];
        let consumer = ends.consumer.lock().take()?;
        let arbiter = SharedWordArbiter::new(ends.arbiter.get()?);
        let (heartbeat, suspect) = timing(ft);
        let config = BackupConfig {
            epoch: EPOCH,
            suspect_after: suspect,
            ack_period: heartbeat,
        };
        Some(Self {
            engine: Backup::new(consumer, arbiter, config, now_ns),
            pair: usize::from(ft.pair),
            ready: false,
            stopped_at: None,
            kept: Lines::new(),
            last_time: 0,
            live: false,
            failed: None,
        })
    }

    fn fail(&mut self, error: BackupError) -> Hold {
        let stop = match &error {
            BackupError::Diverged(d) => {
                report_divergence(d.index, &d.kind);
                StopReason::Diverged { record: d.index }
            }
            BackupError::NotReplaying {
                state: BackupState::Stopped,
            } => StopReason::Superseded,
            other => {
                defmt::error!("FT backup: {}", defmt::Debug2Format(other));
                StopReason::ReplicationFailed
            }
        };
        self.failed.get_or_insert(stop);
        Hold
    }

    fn state_gate(&mut self, now_ns: u64) -> Option<Gate> {
        if let Some(stop) = self.failed {
            return Some(Gate::Stop(stop));
        }
        match self.engine.poll(now_ns) {
            Ok(BackupState::Stopped) => Some(Gate::Stop(StopReason::Superseded)),
            Ok(_) => None,
            Err(e) => {
                self.fail(e);
                self.failed.map(Gate::Stop)
            }
        }
    }
}

/// Names the record and both execution points: a divergence is never silent.
fn report_divergence(index: u64, kind: &DivergenceKind) {
    match kind {
        DivergenceKind::PointMismatch { expected, actual }
        | DivergenceKind::RanPast { expected, actual } => defmt::error!(
            "FT divergence at log record {=u64}: the log has exit {=u64} at PC {=u64:#x} (registers {=u64:#x}), the backup is at exit {=u64} at PC {=u64:#x} (registers {=u64:#x})",
            index,
            expected.det_exits,
            expected.pc,
            expected.reg_hash,
            actual.det_exits,
            actual.pc,
            actual.reg_hash
        ),
        other => defmt::error!(
            "FT divergence at log record {=u64}: {}",
            index,
            defmt::Debug2Format(other)
        ),
    }
}

impl Replica for BackupCopy {
    fn logs(&self) -> bool {
        !self.live
    }

    fn took_over(&self) -> bool {
        self.live
    }

    fn replays(&self) -> bool {
        !self.live
    }

    fn poll(&mut self, now_ns: u64, at: ExecPoint, print: &mut dyn FnMut(&[u8])) -> Gate {
        if self.live {
            return Gate::Run;
        }
        if !self.ready {
            self.ready = true;
            ENDS[self.pair].backup_ready.store(true, Ordering::Release);
        }
        if let Some(gate) = self.state_gate(now_ns) {
            return gate;
        }
        match self.engine.next_event_due(at) {
            Ok(Due::Deliver(Event::Interrupt { vector })) => match u8::try_from(vector) {
                Ok(vector) => Gate::Deliver(vector),
                Err(_) => Gate::Stop(StopReason::ReplicationFailed),
            },
            // Only interrupts are logged as asynchronous events so far.
            Ok(Due::Deliver(_)) => Gate::Stop(StopReason::ReplicationFailed),
            Ok(Due::Run { .. }) => Gate::Run,
            Ok(Due::Wait) => Gate::Wait,
            Ok(Due::GoLive {
                perform_from,
                perform_to,
            }) => {
                defmt::warn!(
                    "FT backup goes live at exit {=u64} ({=u64} ns); printing outputs {=u64}..{=u64} the primary had not reported",
                    at.det_exits,
                    now_ns,
                    perform_from,
                    perform_to
                );
                for seq in perform_from..perform_to {
                    match self.kept.get(seq) {
                        Some(line) => print(line),
                        None => defmt::error!("FT backup lost output {=u64} before go-live", seq),
                    }
                }
                self.live = true;
                Gate::Live {
                    time_ns: self.last_time,
                }
            }
            Err(e) => {
                self.fail(e);
                self.failed.map_or(Gate::Wait, Gate::Stop)
            }
        }
    }

    fn service(&mut self, now_ns: u64, print: &mut dyn FnMut(&[u8])) -> Result<bool, StopReason> {
        if self.live {
            return Ok(false);
        }
        if let Some(Gate::Stop(stop)) = self.state_gate(now_ns) {
            return Err(stop);
        }
        let Some(at) = self.stopped_at else {
            return Ok(false);
        };
        // The guest stopped where the primary's did. Lines the primary may not have printed yet
        // are still owed: wait for their `OutputDone`, or for the primary to fall silent, win
        // the arbiter and print them here.
        match self.poll(now_ns, at, print) {
            Gate::Stop(stop) => Err(stop),
            _ if self.live => Ok(false),
            _ => Ok(self.engine.outputs_owed() > 0),
        }
    }

    fn guest_stopped(&mut self, at: ExecPoint) {
        self.stopped_at = Some(at);
    }

    fn time_read(&mut self, at: ExecPoint, now_ns: u64) -> Result<u64, Hold> {
        if self.live {
            return Ok(now_ns);
        }
        match self.engine.on_sync_read(at, SyncRead::Time) {
            Ok(value) => {
                self.last_time = value;
                Ok(value)
            }
            Err(BackupError::NotHeld { .. }) => Err(Hold),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn interrupt(&mut self, _: ExecPoint, _: u8) -> Result<(), Hold> {
        Ok(())
    }

    fn output_ready(&self, _: usize) -> bool {
        true
    }

    fn output(
        &mut self,
        at: ExecPoint,
        line: &[u8],
        _: &dyn Fn() -> u64,
        print: &mut dyn FnMut(&[u8]),
    ) {
        if self.live {
            print(line);
            return;
        }
        match self.engine.on_output(at, digest(line)) {
            Ok(seq) => self.kept.push(seq, line),
            Err(e) => {
                self.fail(e);
            }
        }
    }
}
