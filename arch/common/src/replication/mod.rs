//! Fault-tolerant partitions on two CPUs of one board: the FT engine's primary and backup as the
//! core's [`Replica`], over a log ring and an arbiter word in the ledger.
//!
//! The primary logs every time read and timer interrupt at its execution point and holds each
//! console line until the backup acknowledged the log up to it. The backup runs the same guest
//! from the same image, takes time and interrupts from the log, compares its console lines with
//! the logged ones and prints none of them, until it wins arbitration and goes live: then it
//! prints the lines the primary had not reported performed, and runs as the partition.

mod backup;
mod copy;
pub mod ethernet;
mod inject;
mod lag;
mod lines;
mod primary;

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tandem_core::config::{Ft, MAX_FT_PAIRS};
use tandem_core::point::register_hash;
use tandem_ft::arbiter::{Arbiter, SharedWordArbiter};
use tandem_ft::link::ring::{Ring, RingConsumer, RingProducer};
use tandem_ft::link::{LogReceiver, LogSender};

pub use backup::BackupCopy;
pub use copy::{FtCopy, Session};
pub use inject::{Injected, KillPoint, Stall};
pub use primary::PrimaryCopy;

/// Frames the ring holds in flight: the backup may lag this far before the primary waits.
pub const RING_SLOTS: usize = 256;

/// Protection epochs a pair can have: the first, and one re-protection onto a spare CPU.
pub const EPOCHS: usize = 2;

/// The first protection epoch; re-protection starts the next.
pub const FIRST_EPOCH: u32 = 1;

/// What the copies of one fault-tolerant partition share, in the ledger: zeroed at a cold boot,
/// which is empty rings and an unclaimed arbiter. Each epoch has a ring of its own, so a copy of
/// an earlier epoch (a zombie primary) can never write into the log a later backup reads; the
/// arbiter word is one for all epochs, and a claim for a later epoch makes every earlier one
/// stale.
#[repr(C)]
pub struct PairArea {
    arbiter: AtomicU64,
    rings: [Ring<RING_SLOTS>; EPOCHS],
}

/// Every pair's shared area, placed in the ledger.
#[repr(C)]
pub struct PairAreas([PairArea; MAX_FT_PAIRS]);

type Producer = RingProducer<'static, RING_SLOTS>;
type Consumer = RingConsumer<'static, RING_SLOTS>;

/// What a pair's copies carry the log and ask for arbitration over.
pub trait Links {
    type Sender: LogSender;
    type Receiver: LogReceiver;
    type Arbiter: Arbiter;
    /// What a re-protection sends the spare its copy over (nothing of its own on one board).
    type Transfer;
    /// Frames the sender holds in flight: how far the backup may lag before the primary waits.
    const WINDOW: u64;
    /// Heartbeat periods a backup whose guest stopped goes on acknowledging before it stops:
    /// the primary stops only once the backup acknowledged the whole log.
    const LINGER: u64 = 0;

    /// Gives the arbiter the time before each poll of a copy (a witness over the network
    /// retries unanswered requests).
    fn tick(arbiter: &mut Self::Arbiter, now_ns: u64) {
        let _ = (arbiter, now_ns);
    }

    /// Logs what the links did so far (when a copy starts suspecting, and when it stops).
    fn report(arbiter: &Self::Arbiter) {
        let _ = arbiter;
    }

    /// The backup of `ft`'s pair in `epoch` has started replaying: the primary may start.
    fn backup_ready(ft: &Ft, epoch: u32) {
        let _ = (ft, epoch);
    }
}

/// Two CPUs of one board: a ring and an arbiter word in the ledger.
pub struct OnBoard;

impl Links for OnBoard {
    type Sender = Producer;
    type Receiver = Consumer;
    type Arbiter = SharedWordArbiter<'static>;
    type Transfer = ();
    const WINDOW: u64 = RING_SLOTS as u64;

    fn backup_ready(ft: &Ft, epoch: u32) {
        if let Some(ends) = ends(ft.pair, epoch) {
            ends.backup_ready.store(true, Ordering::Release);
        }
    }
}

/// The ends of one epoch's ring, made once at bring-up and taken by the CPU of each copy.
struct EpochEnds {
    producer: spin::Mutex<Option<Producer>>,
    consumer: spin::Mutex<Option<Consumer>>,
    /// The backup has started replaying: the primary's guest may start.
    backup_ready: AtomicBool,
}

/// A pair's ends for every epoch, its arbiter word, and whether a snapshot for its spare waits
/// in the ledger.
struct Ends {
    epochs: [EpochEnds; EPOCHS],
    arbiter: spin::Once<&'static AtomicU64>,
    handoff: AtomicBool,
}

static ENDS: [Ends; MAX_FT_PAIRS] = [const {
    Ends {
        epochs: [const {
            EpochEnds {
                producer: spin::Mutex::new(None),
                consumer: spin::Mutex::new(None),
                backup_ready: AtomicBool::new(false),
            }
        }; EPOCHS],
        arbiter: spin::Once::new(),
        handoff: AtomicBool::new(false),
    }
}; MAX_FT_PAIRS];

/// The ends of pair `pair`'s ring for `epoch` (from [`FIRST_EPOCH`]); `None` past the last.
fn ends(pair: u8, epoch: u32) -> Option<&'static EpochEnds> {
    let index = usize::try_from(epoch.checked_sub(FIRST_EPOCH)?).ok()?;
    ENDS.get(usize::from(pair))?.epochs.get(index)
}

/// Waits until pair `ft.pair`'s backup of `epoch` replays, so both copies start from the same
/// state and neither counts the other's start-up as silence (setting up a backup takes
/// milliseconds of virtual time under Bochs).
pub fn wait_for_backup(ft: &Ft, epoch: u32, wait: impl Fn()) {
    let Some(ends) = ends(ft.pair, epoch) else {
        return;
    };
    while !ends.backup_ready.load(Ordering::Acquire) {
        wait();
    }
}

/// The live copy of pair `pair` wrote the snapshot its spare starts from into the ledger.
pub fn hand_off(pair: u8) {
    if let Some(ends) = ENDS.get(usize::from(pair)) {
        ends.handoff.store(true, Ordering::Release);
    }
}

/// Whether a snapshot waits for pair `pair`'s spare (see [`hand_off`]).
pub fn handed_off(pair: u8) -> bool {
    ENDS.get(usize::from(pair))
        .is_some_and(|ends| ends.handoff.load(Ordering::Acquire))
}

/// Splits every pair's rings into their two ends (once, on the bootstrap CPU at bring-up).
pub fn publish(areas: &'static mut PairAreas) {
    for (area, ends) in areas.0.iter_mut().zip(&ENDS) {
        let PairArea { arbiter, rings } = area;
        for (ring, epoch) in rings.iter_mut().zip(&ends.epochs) {
            let (producer, consumer) = ring.split();
            *epoch.producer.lock() = Some(producer);
            *epoch.consumer.lock() = Some(consumer);
        }
        ends.arbiter.call_once(|| &*arbiter);
    }
}

pub(crate) fn timing(ft: &Ft) -> (u64, u64) {
    let heartbeat = u64::from(ft.heartbeat_us) * 1000;
    (heartbeat, heartbeat * u64::from(ft.suspect_after))
}

/// A console line's content, as the log identifies it.
fn digest(line: &[u8]) -> u64 {
    register_hash(line.iter().map(|&b| u64::from(b)))
}
