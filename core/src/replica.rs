//! The seam fault tolerance hooks into: every input a guest could see differently in another run
//! (time, timer interrupts) and every output it makes (console lines) passes through a
//! [`Replica`] at a known execution point.
//!
//! A partition without fault tolerance runs with [`Solo`]: inputs come from the clock, outputs
//! are printed at once. The FT engine (`tandem-ft`, wired in by the hardware layer) implements
//! the primary, which logs inputs and holds outputs until the backup has the log up to them, and
//! the backup, which takes inputs and interrupts from the log instead of the clock.

use crate::point::ExecPoint;
use crate::record::ConsoleIn;
use crate::report::StopReason;

/// What the exit loop does at a deterministic exit boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Enter the guest.
    Run,
    /// Raise this interrupt vector in the guest now (a logged interrupt due here), then ask again.
    Deliver(u8),
    /// Put these bytes of console input (the first `len`) into the partition's UART now (logged
    /// input due here), then ask again.
    Input {
        len: u8,
        bytes: [u8; ConsoleIn::CHUNK],
    },
    /// Do not enter the guest yet (the log does not cover its next step, or the backup lags);
    /// ask again.
    Wait,
    /// This copy has become the partition: its time goes on from `time_ns`, the last time the
    /// log gave the guest; from now on it runs as [`Solo`] would.
    Live { time_ns: u64 },
    /// This copy must stop.
    Stop(StopReason),
    /// Leave the exit loop at this boundary without stopping ([`StopReason::Paused`]): the
    /// hardware layer has work on the paused vCPU (re-protection copies it), then runs it on.
    Pause,
}

/// Where a partition's outputs leave the machine.
pub trait Outlet {
    /// Prints `line` of the partition's console; where it ends in the console's output.
    fn print(&mut self, line: &[u8]) -> Mark;
    /// Whether everything printed up to `mark` has left the machine (the console UART has sent
    /// it), without waiting: only then is an output performed, which a fault-tolerant primary
    /// tells its backup. A line still in a transmit FIFO when the board loses power is lost, yet
    /// its backup would not print it again.
    fn sent(&mut self, mark: Mark) -> bool;
}

/// A position in a console's output: how many bytes it had taken when a line ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark(pub u64);

/// The input or output cannot be taken now: the exit is not completed and the guest executes
/// the instruction again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold;

/// How a partition's copy gets its non-deterministic inputs and performs its outputs.
pub trait Replica {
    /// Whether this copy records or replays a log; `false` lets the exit loop skip computing
    /// execution points.
    fn logs(&self) -> bool;
    /// Whether interrupts and time come from the log instead of the partition's own timer.
    fn replays(&self) -> bool;
    /// How often the copy must get the CPU back while its guest runs without exits, to keep the
    /// protocol alive (acknowledgements, heartbeats); `None` when it need not.
    fn poll_period_ns(&self) -> Option<u64> {
        None
    }
    /// At a deterministic exit boundary `at` (and while the vCPU idles), at time `now_ns`:
    /// protocol work, and outputs that may leave now go to `out`.
    fn poll(&mut self, now_ns: u64, at: ExecPoint, out: &mut dyn Outlet) -> Gate;
    /// Between boundaries (an exit the guest retries, a stop): protocol work only, outputs that
    /// may leave go to `out`. Returns whether outputs are still held.
    fn service(&mut self, now_ns: u64, out: &mut dyn Outlet) -> Result<bool, StopReason>;
    /// Whether this copy took over from its failed peer (a backup that went live): the peer's
    /// part of the run is then over too.
    fn took_over(&self) -> bool {
        false
    }
    /// The guest stopped at the exit at `at` (the exit loop then calls [`Replica::service`] until
    /// no output is held).
    fn guest_stopped(&mut self, at: ExecPoint);
    /// The guest reads the partition's time (`now_ns`) at the exit at `at`: the value it sees.
    fn time_read(&mut self, at: ExecPoint, now_ns: u64) -> Result<u64, Hold>;
    /// The partition's timer raises `vector` at boundary `at` (not called when replaying).
    fn interrupt(&mut self, at: ExecPoint, vector: u8) -> Result<(), Hold>;
    /// Console input `bytes` reach the partition's UART at boundary `at` (not called when
    /// replaying).
    fn input(&mut self, at: ExecPoint, bytes: &[u8]) -> Result<(), Hold>;
    /// Whether `lines` outputs can be taken now; checked before an exit changes anything.
    fn output_ready(&self, lines: usize) -> bool;
    /// The guest completed console line `line` at the exit at `at`; it goes to `out` when it
    /// may leave. `now_ns` reads the clock, should the replica have to wait.
    fn output(
        &mut self,
        at: ExecPoint,
        line: &[u8],
        now_ns: &dyn Fn() -> u64,
        out: &mut dyn Outlet,
    );
}

/// A partition without fault tolerance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Solo;

impl Replica for Solo {
    fn logs(&self) -> bool {
        false
    }
    fn replays(&self) -> bool {
        false
    }
    fn poll(&mut self, _: u64, _: ExecPoint, _: &mut dyn Outlet) -> Gate {
        Gate::Run
    }
    fn service(&mut self, _: u64, _: &mut dyn Outlet) -> Result<bool, StopReason> {
        Ok(false)
    }
    fn guest_stopped(&mut self, _: ExecPoint) {}
    fn time_read(&mut self, _: ExecPoint, now_ns: u64) -> Result<u64, Hold> {
        Ok(now_ns)
    }
    fn interrupt(&mut self, _: ExecPoint, _: u8) -> Result<(), Hold> {
        Ok(())
    }
    fn input(&mut self, _: ExecPoint, _: &[u8]) -> Result<(), Hold> {
        Ok(())
    }
    fn output_ready(&self, _: usize) -> bool {
        true
    }
    fn output(&mut self, _: ExecPoint, line: &[u8], _: &dyn Fn() -> u64, out: &mut dyn Outlet) {
        out.print(line);
    }
}
