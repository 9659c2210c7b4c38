//! The recording copy: logs inputs, holds lines until the backup has the log up to them.

use tandem_core::config::Ft;
use tandem_core::point::ExecPoint;
use tandem_core::replica::{Gate, Hold, Mark, Outlet, Replica};
use tandem_core::report::StopReason;
use tandem_ft::arbiter::{Arbiter, ArbiterError, SharedWordArbiter, Side};
use tandem_ft::latency::Latencies;
use tandem_ft::primary::{MAX_HELD_OUTPUTS, Primary, PrimaryConfig, PrimaryError, PrimaryState};
use tandem_ft::record::{Event, InputData};

use super::inject::{Injected, KillPoint, Stall};
use super::lag;
use super::lines::Lines;
use super::{Links, OnBoard, digest, ends, timing};

/// The recording copy.
pub struct PrimaryCopy<K: Links> {
    engine: Primary<K::Sender, K::Arbiter>,
    held: Lines,
    failed: Option<StopReason>,
    /// The latest time the copy polled: when an injected failure kills it.
    last_poll_ns: u64,
    /// How often the copy polls while its guest runs without exits.
    heartbeat_ns: u64,
    /// The protection epoch this copy logs in.
    epoch: u32,
    injected: Injected,
    stalled_until: Option<u64>,
    /// An acknowledged output the stall interrupted before it was printed.
    unprinted: Option<u64>,
    die: fn() -> !,
    /// When each held line was produced, and how long the output rule held lines: the latency
    /// it adds.
    produced_at: heapless::Deque<u64, MAX_HELD_OUTPUTS>,
    hold: Latencies,
    hold_total_ns: u64,
    /// The line printed but not yet reported performed, with where it ends on the console: a
    /// line is performed once its last byte has left the board, not when it is in the UART's
    /// FIFO (a power cut in between would lose its tail, which the backup, told the line was
    /// performed, would not print again). Waiting here instead of at the UART keeps the copy
    /// polling its link meanwhile; the next line is printed only once this one is reported, so a
    /// takeover prints at most this one line again.
    printed: Option<(u64, Option<Mark>)>,
    /// The guest stopped: the copy only waits for its last outputs to leave.
    stopping: bool,
    /// The backup fell silent and the copy asks the arbiter (reported once).
    suspecting: bool,
    pair: usize,
    /// The boundary the copy last told the lag meter about.
    last_boundary: Option<u64>,
}

impl PrimaryCopy<OnBoard> {
    /// The primary of pair `ft.pair` in protection epoch `epoch` on this board, starting at
    /// `now_ns`; `None` if another CPU took its end. `die` stops the CPU when `injected` says it
    /// fails.
    pub fn new(
        ft: &Ft,
        epoch: u32,
        now_ns: u64,
        injected: Injected,
        die: fn() -> !,
    ) -> Option<Self> {
        let producer = ends(ft.pair, epoch)?.producer.lock().take()?;
        let word = *super::ENDS.get(usize::from(ft.pair))?.arbiter.get()?;
        let arbiter = SharedWordArbiter::new(word);
        Some(Self::over(
            producer, arbiter, ft, epoch, now_ns, injected, die,
        ))
    }
}

impl<K: Links> PrimaryCopy<K> {
    /// The primary of `ft`'s pair in `epoch`, logging into `link` and asking `arbiter`.
    pub fn over(
        link: K::Sender,
        arbiter: K::Arbiter,
        ft: &Ft,
        epoch: u32,
        now_ns: u64,
        injected: Injected,
        die: fn() -> !,
    ) -> Self {
        let (heartbeat, suspect) = timing(ft);
        let config = PrimaryConfig {
            epoch,
            heartbeat_period: heartbeat,
            suspect_after: suspect,
            max_lag_records: K::WINDOW / 2,
            max_lag_time: suspect,
        };
        Self {
            engine: Primary::new(link, arbiter, config, now_ns),
            held: Lines::new(),
            failed: None,
            last_poll_ns: now_ns,
            heartbeat_ns: heartbeat,
            epoch,
            injected,
            stalled_until: None,
            unprinted: None,
            die,
            produced_at: heapless::Deque::new(),
            hold: Latencies::new(),
            hold_total_ns: 0,
            printed: None,
            stopping: false,
            suspecting: false,
            pair: usize::from(ft.pair),
            last_boundary: None,
        }
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

    /// Prints every held line the backup now covers, and reports each performed once it has
    /// left the board.
    fn release(&mut self, now_ns: u64, out: &mut dyn Outlet) {
        self.report_sent(out);
        if self.unprinted.is_some() {
            match self.engine.arbiter_mut().holder(self.epoch) {
                // Released before the stall, but the backup went live meanwhile: it prints it.
                Ok(Some(Side::Backup)) => {
                    self.failed = Some(StopReason::Superseded);
                    return;
                }
                // Not known yet (a witness not answering): nothing leaves until it is.
                Err(ArbiterError::Unreachable) => return,
                _ => {}
            }
        }
        let next = |copy: &mut Self| copy.unprinted.take().or_else(|| copy.engine.next_release());
        while self.printed.is_none()
            && let Some(seq) = next(self)
        {
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
            let mark = self.held.get(seq).map(|line| out.print(line));
            self.held.release_to(seq + 1);
            self.printed = Some((seq, mark));
            if let Some(produced) = self.produced_at.pop_front() {
                let held = now_ns.saturating_sub(produced);
                self.hold.record(held);
                self.hold_total_ns += held;
            }
            self.report_sent(out);
        }
    }

    /// Reports the printed line performed once it has left the board.
    fn report_sent(&mut self, out: &mut dyn Outlet) {
        let Some((seq, mark)) = self.printed else {
            return;
        };
        if mark.is_some_and(|mark| !out.sent(mark)) {
            return;
        }
        self.printed = None;
        self.kill_if(KillPoint::Printed(seq));
        if let Err(e) = self.engine.output_performed(seq) {
            self.fail(e);
        }
    }

    fn report_hold_time(&mut self) {
        let hold = core::mem::take(&mut self.hold);
        let lines = hold.samples();
        if lines > 0 {
            defmt::info!(
                "FT output rule: {=u64} lines held {=u64} ns on average, p99 {=u64} ns, {=u64} ns at most",
                lines,
                core::mem::take(&mut self.hold_total_ns) / lines,
                hold.percentile(990),
                hold.max()
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

    fn step(&mut self, now_ns: u64, at: ExecPoint, out: &mut dyn Outlet) -> Gate {
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
        K::tick(self.engine.arbiter_mut(), now_ns);
        match self.engine.poll(now_ns, at) {
            Ok(status) => {
                self.release(now_ns, out);
                if let Some(stop) = self.failed {
                    return Gate::Stop(stop);
                }
                if status.state == PrimaryState::Arbitrating && !self.suspecting {
                    self.suspecting = true;
                    defmt::warn!(
                        "FT primary suspects the backup after {=u64} ns of silence ({=u64} ns): asking the arbiter",
                        self.engine.silent_for(now_ns),
                        now_ns
                    );
                    K::report(self.engine.arbiter_mut());
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

impl<K: Links> Replica for PrimaryCopy<K> {
    fn logs(&self) -> bool {
        true
    }

    fn replays(&self) -> bool {
        false
    }

    fn poll_period_ns(&self) -> Option<u64> {
        Some(self.heartbeat_ns)
    }

    fn poll(&mut self, now_ns: u64, at: ExecPoint, out: &mut dyn Outlet) -> Gate {
        if self.last_boundary != Some(at.det_exits) {
            self.last_boundary = Some(at.det_exits);
            lag::passed(self.pair, at.det_exits, now_ns);
        }
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
        self.step(now_ns, at, out)
    }

    fn service(&mut self, now_ns: u64, out: &mut dyn Outlet) -> Result<bool, StopReason> {
        let at = self.engine.point();
        match self.step(now_ns, at, out) {
            Gate::Stop(stop) => Err(stop),
            _ if self.engine.settled() => {
                if self.stopping {
                    self.report_hold_time();
                    K::report(self.engine.arbiter_mut());
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
        defmt::info!(
            "FT log frames: {=u64} sent, each one header and CRC for its records",
            stats.frames
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

    fn input(&mut self, at: ExecPoint, bytes: &[u8]) -> Result<(), Hold> {
        let Ok(data) = InputData::from_slice(bytes) else {
            return Err(Hold);
        };
        match self
            .engine
            .on_nondeterministic_input(at, Event::Input { device: 0, data })
        {
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
        out: &mut dyn Outlet,
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
                    if let Gate::Stop(_) = self.step(now_ns(), self.engine.point(), out) {
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
