//! An idle kernel's log: what the primary sends while a Linux-like guest sits in its idle loop
//! and takes a periodic timer tick, with kernel-space PCs and a fresh 64-bit register hash at
//! every point. The real primary decides the frames and heartbeats (polled at every exit and
//! every 100 µs while the guest halts, as the exit loop does), and a backup replays the log
//! point by point, so the figure it gives is the log's cost per idle tick, all inclusive, for a
//! log that still checks out.

use super::rng::Rng;
use crate::arbiter::SharedWordArbiter;
use crate::backup::{Backup, BackupConfig, BackupError, Due, SyncRead};
use crate::link::ring::Ring;
use crate::primary::{Primary, PrimaryConfig, PrimaryError};
use crate::record::Event;
use core::sync::atomic::AtomicU64;
use std::boxed::Box;
use std::vec::Vec;
use tandem_core::point::ExecPoint;

/// Where the idle loop halts (`default_idle`, after its `sti; hlt`).
const IDLE_PC: u64 = 0xffff_ffff_81e0_3f2e;
/// The clock read in the tick handler (`read_tsc` under `ktime_get`).
const CLOCK_PC: u64 = 0xffff_ffff_8103_b1c4;
/// The second read, when programming the next deadline (`lapic_next_deadline`).
const DEADLINE_PC: u64 = 0xffff_ffff_8107_2a19;
/// The deadline MSR write and the end-of-interrupt write.
const WRMSR_PC: u64 = 0xffff_ffff_8107_2a31;
const EOI_PC: u64 = 0xffff_ffff_8107_1b48;
/// The local APIC timer's vector under Linux.
const TIMER_VECTOR: u32 = 236;
/// How often the exit loop polls the primary while its guest halts.
const IDLE_POLL_NS: u64 = 100_000;
/// What one exit costs the guest in time.
const EXIT_NS: u64 = 1_500;

/// The idle guest and the pair's heartbeat.
#[derive(Clone, Copy, Debug)]
pub struct IdleKernel {
    /// Timer tick period (1 ms: `HZ=1000`).
    pub tick_ns: u64,
    /// Every this many ticks the handler reads the clock a second time (0: never).
    pub second_read_every: u64,
    /// The primary's heartbeat period, in ticks; each copy suspects the other after three.
    pub heartbeat_ticks: u64,
    /// Ticks to run.
    pub ticks: u64,
    /// Seeds the register hashes and the jitter of interrupt and read times.
    pub seed: u64,
}

/// What the primary sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdleLog {
    /// Timer ticks the guest took.
    pub ticks: u64,
    /// Records logged, and of those heartbeats.
    pub records: u64,
    /// See `records`.
    pub heartbeats: u64,
    /// Frames sent, and their bytes: everything the link carried.
    pub frames: u64,
    /// See `frames`.
    pub bytes: u64,
}

impl IdleLog {
    /// Log bytes per timer tick, all inclusive.
    pub fn bytes_per_tick(&self) -> f64 {
        self.bytes as f64 / self.ticks.max(1) as f64
    }
}

/// Why the run did not complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdleError {
    /// The primary refused a call.
    Primary(PrimaryError),
    /// The backup refused a call (a divergence among others).
    Backup(BackupError),
    /// The backup replayed something else than the primary recorded.
    Replay { step: usize },
    /// The backup did not replay up to the primary's last point.
    Behind { step: usize, of: usize },
}

/// One thing the guest does, as both copies see it.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// A completed exit; the timer interrupt is delivered here when `wake` is set (the idle
    /// loop's halt, which the primary's clock leaves at `wake`).
    Boundary {
        at: ExecPoint,
        now: u64,
        wake: Option<u64>,
    },
    /// A trapped clock read at its exit, which the guest sees as `value`.
    Read { at: ExecPoint, value: u64 },
}

/// The guest's exits for the whole run: per tick, the clock read (twice every so often), the
/// deadline and end-of-interrupt writes, and the halt, whose boundary takes the next tick.
fn script(k: &IdleKernel) -> Vec<Step> {
    let mut rng = Rng::new(k.seed);
    let mut point = |pc: u64, det_exits: u64| ExecPoint {
        det_exits,
        pc,
        reg_hash: rng.next_u64(),
        precise: None,
    };
    let wake = |tick: u64, rng: &mut Rng| tick * k.tick_ns + rng.below(2_000);
    let mut jitter = Rng::new(k.seed ^ 1);
    let mut steps = Vec::from([Step::Boundary {
        at: point(IDLE_PC, 0),
        now: 0,
        wake: Some(wake(1, &mut jitter)),
    }]);
    let mut det_exits = 0;
    let mut now = k.tick_ns;
    for tick in 1..=k.ticks {
        let twice = k.second_read_every != 0 && tick % k.second_read_every == 0;
        let reads: &[u64] = if twice {
            &[CLOCK_PC, DEADLINE_PC]
        } else {
            &[CLOCK_PC]
        };
        for &pc in reads {
            now += EXIT_NS + jitter.below(500);
            det_exits += 1;
            steps.push(Step::Read {
                at: point(pc, det_exits),
                value: now,
            });
            steps.push(Step::Boundary {
                at: point(pc + 2, det_exits),
                now,
                wake: None,
            });
        }
        for pc in [WRMSR_PC, EOI_PC, IDLE_PC] {
            now += EXIT_NS + jitter.below(500);
            det_exits += 1;
            let halt = pc == IDLE_PC && tick < k.ticks;
            let wake = halt.then(|| wake(tick + 1, &mut jitter));
            steps.push(Step::Boundary {
                at: point(pc, det_exits),
                now,
                wake,
            });
            if let Some(wake) = wake {
                now = wake;
            }
        }
    }
    steps
}

/// Run `k` with a primary and a backup on a shared-memory ring.
pub fn run_idle(k: &IdleKernel) -> Result<IdleLog, IdleError> {
    let steps = script(k);
    let word = AtomicU64::new(0);
    let mut ring = Box::new(Ring::<256>::default());
    let (tx, rx) = ring.split();
    let heartbeat = k.heartbeat_ticks.max(1) * k.tick_ns;
    let suspect_after = 3 * heartbeat;
    let mut primary = Primary::new(
        tx,
        SharedWordArbiter::new(&word),
        PrimaryConfig {
            epoch: 1,
            heartbeat_period: heartbeat,
            suspect_after,
            max_lag_records: 128,
            max_lag_time: suspect_after,
        },
        0,
    );
    let mut backup = Backup::new(
        rx,
        SharedWordArbiter::new(&word),
        BackupConfig {
            epoch: 1,
            suspect_after,
            ack_period: heartbeat,
        },
        0,
    );
    let mut replayed = Replayed::default();
    let mut last = ExecPoint::default();
    for step in &steps {
        record(&mut primary, step).map_err(IdleError::Primary)?;
        if let Step::Boundary { at, now, wake } = *step {
            last = at;
            replayed = replay(&mut backup, &steps, replayed, wake.unwrap_or(now))?;
        }
    }
    primary.log_stop(last).map_err(IdleError::Primary)?;
    let stats = primary.stats();
    let end = match steps.last() {
        Some(Step::Boundary { now, .. }) => *now,
        _ => 0,
    };
    replayed = replay(&mut backup, &steps, replayed, end)?;
    // The last boundary is where the guest stands: the backup gets there and waits.
    if replayed.step + 1 < steps.len() {
        return Err(IdleError::Behind {
            step: replayed.step,
            of: steps.len(),
        });
    }
    Ok(IdleLog {
        ticks: k.ticks,
        records: stats.records,
        heartbeats: stats.heartbeats,
        frames: stats.frames,
        bytes: stats.log_bytes,
    })
}

/// What the primary does at `step`: poll at each boundary (every 100 µs while halted) and log
/// the interrupt it delivers, log each read at its exit.
fn record<L, A>(p: &mut Primary<L, A>, step: &Step) -> Result<(), PrimaryError>
where
    L: crate::link::LogSender,
    A: crate::arbiter::Arbiter,
{
    match *step {
        Step::Boundary { at, now, wake } => {
            p.boundary_reached(at)?;
            let mut t = now;
            loop {
                p.poll(t, at)?;
                match wake {
                    Some(wake) if t < wake => t = (t + IDLE_POLL_NS).min(wake),
                    _ => break,
                }
            }
            if wake.is_some() {
                p.on_nondeterministic_input(
                    at,
                    Event::Interrupt {
                        vector: TIMER_VECTOR,
                    },
                )?;
            }
            Ok(())
        }
        Step::Read { at, value } => p.on_nondeterministic_input(at, Event::TimeRead { value }),
    }
}

/// How far the backup has replayed: the next step, and whether the guest, halted there, has
/// already taken its interrupt.
#[derive(Clone, Copy, Default)]
struct Replayed {
    step: usize,
    woke: bool,
}

/// The backup replays as far as the log it holds reaches.
fn replay<L, A>(
    b: &mut Backup<L, A>,
    steps: &[Step],
    mut at: Replayed,
    now: u64,
) -> Result<Replayed, IdleError>
where
    L: crate::link::LogReceiver,
    A: crate::arbiter::Arbiter,
{
    b.poll(now).map_err(IdleError::Backup)?;
    while let Some(step) = steps.get(at.step) {
        let fail = IdleError::Replay { step: at.step };
        match *step {
            Step::Boundary {
                at: point, wake, ..
            } => loop {
                let halted = wake.is_some() && !at.woke;
                match b.next_event_due(point).map_err(IdleError::Backup)? {
                    Due::Deliver(Event::Interrupt {
                        vector: TIMER_VECTOR,
                    }) if halted => at.woke = true,
                    Due::Run { .. } if !halted => break,
                    Due::Wait => return Ok(at),
                    _ => return Err(fail),
                }
            },
            Step::Read { at: point, value } => match b.on_sync_read(point, SyncRead::Time) {
                Ok(v) if v == value => {}
                Ok(_) => return Err(fail),
                Err(BackupError::NotHeld { .. }) => return Ok(at),
                Err(e) => return Err(IdleError::Backup(e)),
            },
        }
        at = Replayed {
            step: at.step + 1,
            woke: false,
        };
    }
    Ok(at)
}
