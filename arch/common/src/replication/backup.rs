//! The replaying copy: takes inputs from the log, compares its lines, goes live when the primary
//! fails.

use tandem_core::config::Ft;
use tandem_core::point::ExecPoint;
use tandem_core::record::ConsoleIn;
use tandem_core::replica::{Gate, Hold, Outlet, Replica};
use tandem_core::report::StopReason;
use tandem_ft::arbiter::SharedWordArbiter;
use tandem_ft::backup::{
    Backup, BackupConfig, BackupError, BackupState, DivergenceKind, Due, SyncRead,
};
use tandem_ft::check::{Check, check_tag};
use tandem_ft::record::Event;

use super::inject::Injected;
use super::lag::LagMeter;
use super::lines::Lines;
use super::{ENDS, Links, OnBoard, digest, ends, timing};

/// The replaying copy.
pub struct BackupCopy<K: Links> {
    engine: Backup<K::Receiver, K::Arbiter>,
    ft: Ft,
    epoch: u32,
    ready: bool,
    /// How often the copy acknowledges while its guest runs without exits.
    heartbeat_ns: u64,
    /// Where the guest stopped: the copy then waits for the primary's last `OutputDone`s.
    stopped_at: Option<ExecPoint>,
    kept: Lines,
    last_time: u64,
    /// Time reads replayed so far, and the one an injected corruption flips (`Injected`).
    time_reads: u64,
    corrupt_read: Option<u64>,
    live: bool,
    /// The primary fell silent and the copy asks the arbiter (reported once).
    suspecting: bool,
    /// When the stopped guest owed nothing more.
    settled_at: Option<u64>,
    failed: Option<StopReason>,
    lag: LagMeter,
}

/// The bit an injected corruption flips in a time read: about a millisecond, so the guest sees it
/// in whatever unit it reads time (a 4 MHz TSC tick is 250 ns: flipping bit 0 often changed
/// nothing it could see).
const CORRUPTION: u64 = 1 << 20;

impl BackupCopy<OnBoard> {
    /// The backup of pair `ft.pair` in protection epoch `epoch` on this board, starting at
    /// `now_ns`, with the corruption `injected` asks for; `None` if another CPU took its end.
    pub fn new(ft: &Ft, epoch: u32, now_ns: u64, injected: Injected) -> Option<Self> {
        let consumer = ends(ft.pair, epoch)?.consumer.lock().take()?;
        let arbiter = SharedWordArbiter::new(ENDS.get(usize::from(ft.pair))?.arbiter.get()?);
        Some(Self::over(consumer, arbiter, ft, epoch, now_ns, injected))
    }
}

impl<K: Links> BackupCopy<K> {
    /// The backup of `ft`'s pair in `epoch`, replaying from `link` and asking `arbiter`.
    pub fn over(
        link: K::Receiver,
        arbiter: K::Arbiter,
        ft: &Ft,
        epoch: u32,
        now_ns: u64,
        injected: Injected,
    ) -> Self {
        let (heartbeat, suspect) = timing(ft);
        let config = BackupConfig {
            epoch,
            suspect_after: suspect,
            ack_period: heartbeat,
        };
        Self {
            engine: Backup::new(link, arbiter, config, now_ns),
            ft: *ft,
            epoch,
            ready: false,
            heartbeat_ns: heartbeat,
            stopped_at: None,
            kept: Lines::new(),
            last_time: 0,
            time_reads: 0,
            corrupt_read: injected.corrupt_read,
            live: false,
            suspecting: false,
            settled_at: None,
            failed: None,
            lag: LagMeter::new(usize::from(ft.pair)),
        }
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
        K::tick(self.engine.arbiter_mut(), now_ns);
        match self.engine.poll(now_ns) {
            Ok(BackupState::Stopped) => {
                K::report(self.engine.arbiter_mut());
                Some(Gate::Stop(StopReason::Superseded))
            }
            Ok(BackupState::Arbitrating) if !self.suspecting => {
                self.suspecting = true;
                defmt::warn!(
                    "FT backup suspects the primary after {=u64} ns of silence ({=u64} ns): asking the arbiter",
                    self.engine.silent_for(now_ns),
                    now_ns
                );
                K::report(self.engine.arbiter_mut());
                None
            }
            Ok(_) => None,
            Err(e) => {
                self.fail(e);
                self.failed.map(Gate::Stop)
            }
        }
    }
}

/// Names the record and both execution points: a divergence is never silent. Most records carry
/// only a check tag of the primary's PC and registers: the report then says so, and gives the
/// backup's tag beside its whole point.
fn report_divergence(index: u64, kind: &DivergenceKind) {
    match kind {
        DivergenceKind::PointMismatch { expected, actual }
        | DivergenceKind::RanPast { expected, actual } => match expected.check {
            Check::Full { pc, reg_hash } => defmt::error!(
                "FT divergence at log record {=u64}: the log has exit {=u64} at PC {=u64:#x} (registers {=u64:#x}), the backup is at exit {=u64} at PC {=u64:#x} (registers {=u64:#x})",
                index,
                expected.det_exits,
                pc,
                reg_hash,
                actual.det_exits,
                actual.pc,
                actual.reg_hash
            ),
            Check::Tag(tag) => defmt::error!(
                "FT divergence at log record {=u64}: the log has exit {=u64} with check tag {=u8:#04x} (the record carries only a tag of the primary's PC and registers), the backup is at exit {=u64} at PC {=u64:#x} (registers {=u64:#x}, tag {=u8:#04x})",
                index,
                expected.det_exits,
                tag,
                actual.det_exits,
                actual.pc,
                actual.reg_hash,
                check_tag(actual.pc, actual.reg_hash)
            ),
            Check::Unchecked => defmt::error!(
                "FT divergence at log record {=u64}: the log has exit {=u64}, the backup is at exit {=u64} at PC {=u64:#x} (registers {=u64:#x})",
                index,
                expected.det_exits,
                actual.det_exits,
                actual.pc,
                actual.reg_hash
            ),
        },
        other => defmt::error!(
            "FT divergence at log record {=u64}: {}",
            index,
            defmt::Debug2Format(other)
        ),
    }
}

impl<K: Links> Replica for BackupCopy<K> {
    fn logs(&self) -> bool {
        !self.live
    }

    fn took_over(&self) -> bool {
        self.live
    }

    fn replays(&self) -> bool {
        !self.live
    }

    fn poll_period_ns(&self) -> Option<u64> {
        (!self.live).then_some(self.heartbeat_ns)
    }

    fn poll(&mut self, now_ns: u64, at: ExecPoint, out: &mut dyn Outlet) -> Gate {
        if self.live {
            return Gate::Run;
        }
        if !self.ready {
            self.ready = true;
            K::backup_ready(&self.ft, self.epoch);
        }
        if let Some(gate) = self.state_gate(now_ns) {
            return gate;
        }
        self.lag.arrived(at.det_exits, now_ns);
        match self.engine.next_event_due(at) {
            Ok(Due::Deliver(Event::Interrupt { vector })) => match u8::try_from(vector) {
                Ok(vector) => Gate::Deliver(vector),
                Err(_) => Gate::Stop(StopReason::ReplicationFailed),
            },
            Ok(Due::Deliver(Event::Input { data, .. })) => {
                let mut bytes = [0; ConsoleIn::CHUNK];
                match bytes.get_mut(..data.len()) {
                    Some(to) => {
                        to.copy_from_slice(&data);
                        Gate::Input {
                            len: data.len() as u8,
                            bytes,
                        }
                    }
                    None => Gate::Stop(StopReason::ReplicationFailed),
                }
            }
            // Interrupts and console input are the only asynchronous events logged.
            Ok(Due::Deliver(_)) => Gate::Stop(StopReason::ReplicationFailed),
            Ok(Due::Run { .. }) => Gate::Run,
            Ok(Due::Wait) => Gate::Wait,
            Ok(Due::GoLive {
                perform_from,
                perform_to,
            }) => {
                defmt::warn!(
                    "FT backup goes live in epoch {=u32} at exit {=u64} ({=u64} ns); printing outputs {=u64}..{=u64} the primary had not reported",
                    self.epoch,
                    at.det_exits,
                    now_ns,
                    perform_from,
                    perform_to
                );
                for seq in perform_from..perform_to {
                    match self.kept.get(seq) {
                        Some(line) => {
                            out.print(line);
                        }
                        None => defmt::error!("FT backup lost output {=u64} before go-live", seq),
                    }
                }
                self.lag.report();
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

    fn service(&mut self, now_ns: u64, out: &mut dyn Outlet) -> Result<bool, StopReason> {
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
        match self.poll(now_ns, at, out) {
            Gate::Stop(stop) => Err(stop),
            _ if self.live => Ok(false),
            _ if self.engine.outputs_owed() > 0 => Ok(true),
            _ => {
                // Nothing owed: the copy may go, once its acknowledgements of the last records
                // had time to reach a primary that waits for them (`K::LINGER`).
                let done_at = *self.settled_at.get_or_insert(now_ns);
                Ok(now_ns.saturating_sub(done_at) < K::LINGER.saturating_mul(self.heartbeat_ns))
            }
        }
    }

    fn guest_stopped(&mut self, at: ExecPoint) {
        self.stopped_at = Some(at);
        K::report(self.engine.arbiter_mut());
        if !self.live {
            self.lag.report();
        }
    }

    fn time_read(&mut self, at: ExecPoint, now_ns: u64) -> Result<u64, Hold> {
        if self.live {
            return Ok(now_ns);
        }
        match self.engine.on_sync_read(at, SyncRead::Time) {
            Ok(value) => {
                self.last_time = value;
                self.time_reads += 1;
                if self.corrupt_read == Some(self.time_reads) {
                    defmt::warn!(
                        "injected: the FT backup's time read {=u64} is corrupted",
                        self.time_reads
                    );
                    return Ok(value ^ CORRUPTION);
                }
                Ok(value)
            }
            Err(BackupError::NotHeld { .. }) => Err(Hold),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn interrupt(&mut self, _: ExecPoint, _: u8) -> Result<(), Hold> {
        Ok(())
    }

    /// Called once live only: the copy then reads the console line itself.
    fn input(&mut self, _: ExecPoint, _: &[u8]) -> Result<(), Hold> {
        Ok(())
    }

    fn output_ready(&self, _: usize) -> bool {
        true
    }

    fn output(&mut self, at: ExecPoint, line: &[u8], _: &dyn Fn() -> u64, out: &mut dyn Outlet) {
        if self.live {
            out.print(line);
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
