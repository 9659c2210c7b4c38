//! What one simulated run does: workload, link, timing and the faults it injects, all drawn from
//! one seed so that the seed alone reproduces the run.

use super::net::WireFaults;
use super::rng::Rng;
use crate::mutant::Mutants;

/// Which log link the run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkKind {
    /// Shared-memory ring between two cores of one board.
    Ring,
    /// Datagrams over a faulty network between two boards.
    Datagram,
}

/// Which copy a fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    /// The recording copy.
    Primary,
    /// The replaying copy.
    Backup,
}

/// When a crash happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// At a given simulated time.
    At(u64),
    /// Right after the primary logged its `n`-th output, before any ack for it.
    SentNotAcked(u64),
    /// After the ack that allows output `n` to leave, before it leaves.
    AckedNotReleased(u64),
    /// After output `n` left, before its `OutputDone` is logged.
    ReleasedNotDone(u64),
}

/// A crash of one copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crash {
    /// Who dies.
    pub who: Who,
    /// When.
    pub point: CrashPoint,
}

/// Cut connections for a while. `mask` bit 0: primary–backup link; bit 1: primary–arbiter;
/// bit 2: backup–arbiter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    /// Which connections are cut.
    pub mask: u8,
    /// Cut from this time...
    pub from: u64,
    /// ...until this time.
    pub until: u64,
}

/// One copy stops executing (a long SMI, a stalled core) and then resumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pause {
    /// Who stalls.
    pub who: Who,
    /// From this time...
    pub from: u64,
    /// ...until this time.
    pub until: u64,
}

/// Re-protection after a failover: the copy gone live clones a new backup onto a spare core (in
/// a new epoch), which may in turn have to take over, and so on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reprotection {
    /// Delay from going live to starting the copy.
    pub start_after: u64,
    /// The new primary crashes this long after the new pair starts (the cycle then repeats).
    pub crash_after: Option<u64>,
    /// At most this many re-protections in the run.
    pub cycles: u32,
}

/// Guest workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workload {
    /// Timer tick period (ns); 10 ms is a 100 Hz guest.
    pub tick: u64,
    /// Mean time between client requests (ns); 0 for none.
    pub request_every: u64,
    /// Bytes per client request.
    pub request_bytes: usize,
}

/// Everything about one run.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// The seed it came from.
    pub seed: u64,
    /// Simulated duration (ns).
    pub duration: u64,
    /// Simulated time per step (ns): each copy takes at most one guest exit per step.
    pub step: u64,
    /// Guest workload.
    pub workload: Workload,
    /// The client's last request, if it stops before the end (the stream then ends with
    /// whatever was in flight at a failover, the case that shows outputs lost at the cut).
    pub client_stops_at: Option<u64>,
    /// Log link.
    pub link: LinkKind,
    /// Network faults (datagram link only).
    pub faults: WireFaults,
    /// Heartbeat period (ns); also the backup's ack period.
    pub heartbeat: u64,
    /// Silence before suspicion (ns).
    pub suspect_after: u64,
    /// Retransmission timeout of the datagram link (ns).
    pub retransmit_after: u64,
    /// Crash of one copy.
    pub crash: Option<Crash>,
    /// Connection cuts.
    pub partition: Option<Partition>,
    /// A stall of one copy.
    pub pause: Option<Pause>,
    /// Re-protection after a failover, and crashes of the new primaries.
    pub reprotect: Option<Reprotection>,
    /// Time at which the backup's replay silently goes wrong.
    pub diverge_at: Option<u64>,
    /// Deliberate protocol bugs.
    pub mutants: Mutants,
    /// Keep per-exit guest history (needed by the divergence invariant).
    pub keep_history: bool,
    /// The platform has a precise counter: the primary's guest is also stopped between exits
    /// (asynchronous exits) and interrupts are delivered and replayed there.
    pub precise: bool,
}

const US: u64 = 1_000;

impl Scenario {
    /// A fault-free run with the given workload, link and heartbeat, for measurements. The network
    /// has a fixed 10 us latency (a point-to-point link keeps order).
    pub fn quiet(
        seed: u64,
        duration: u64,
        workload: Workload,
        link: LinkKind,
        heartbeat: u64,
    ) -> Self {
        Self {
            seed,
            duration,
            step: US,
            workload,
            client_stops_at: None,
            link,
            faults: WireFaults {
                delay_min: 10 * US,
                delay_max: 10 * US,
                ..WireFaults::default()
            },
            heartbeat,
            suspect_after: 3 * heartbeat,
            retransmit_after: 60 * US,
            crash: None,
            partition: None,
            pause: None,
            reprotect: None,
            diverge_at: None,
            mutants: Mutants::default(),
            keep_history: false,
            precise: false,
        }
    }

    /// The faulty run for `seed`: a mix of crashes at any time and at the protocol-critical
    /// points, network faults, partitions in every combination, stalls and replay bugs.
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let duration = 4_000 * US;
        // Faults start once the pair is streaming and end early enough for failover to finish.
        let fault_window = (300 * US, 2_500 * US);
        let link = if rng.chance(0.3) {
            LinkKind::Ring
        } else {
            LinkKind::Datagram
        };
        let delay_max = rng.between(2, 25) * US;
        let faults = WireFaults {
            loss: [0.0, 0.01, 0.05, 0.2][rng.below(4) as usize],
            duplicate: [0.0, 0.02, 0.1][rng.below(3) as usize],
            corrupt: [0.0, 0.01, 0.05][rng.below(3) as usize],
            reorder: [0.0, 0.02, 0.1][rng.below(3) as usize],
            delay_min: rng.between(1, 2) * US,
            delay_max,
        };
        let heartbeat = rng.between(20, 80) * US;
        let suspect_after = heartbeat * rng.between(3, 5) + 2 * delay_max;
        let at = |rng: &mut Rng| rng.between(fault_window.0, fault_window.1);
        let crash = match rng.below(10) {
            0..=2 => None,
            3 => Some(Crash {
                who: Who::Backup,
                point: CrashPoint::At(at(&mut rng)),
            }),
            4 | 5 => Some(Crash {
                who: Who::Primary,
                point: CrashPoint::At(at(&mut rng)),
            }),
            6 => Some(Crash {
                who: Who::Primary,
                point: CrashPoint::SentNotAcked(rng.between(3, 40)),
            }),
            7 => Some(Crash {
                who: Who::Primary,
                point: CrashPoint::AckedNotReleased(rng.between(3, 40)),
            }),
            _ => Some(Crash {
                who: Who::Primary,
                point: CrashPoint::ReleasedNotDone(rng.between(3, 40)),
            }),
        };
        let partition = rng.chance(0.4).then(|| {
            let from = at(&mut rng);
            Partition {
                mask: rng.between(1, 7) as u8,
                from,
                until: from + rng.between(50, 1_000) * US,
            }
        });
        let pause = rng.chance(0.15).then(|| {
            let from = at(&mut rng);
            Pause {
                who: if rng.chance(0.5) {
                    Who::Primary
                } else {
                    Who::Backup
                },
                from,
                until: from + rng.between(20, 800) * US,
            }
        });
        let diverge_at = rng.chance(0.1).then(|| at(&mut rng));
        let precise = rng.chance(0.3);
        let client_stops_at = rng.chance(0.3).then(|| at(&mut rng));
        let reprotect = rng.chance(0.5).then(|| Reprotection {
            start_after: rng.between(10, 200) * US,
            crash_after: rng
                .chance(0.7)
                .then(|| rng.between(suspect_after / US, 800) * US),
            cycles: rng.between(1, 3) as u32,
        });
        Self {
            seed,
            duration,
            step: US,
            workload: Workload {
                tick: rng.between(100, 400) * US,
                request_every: rng.between(5, 40) * US,
                request_bytes: rng.between(1, 200) as usize,
            },
            client_stops_at,
            link,
            faults,
            heartbeat,
            suspect_after,
            retransmit_after: 2 * delay_max + 10 * US,
            crash,
            partition,
            pause,
            reprotect,
            diverge_at,
            mutants: Mutants::default(),
            keep_history: true,
            precise,
        }
    }
}
