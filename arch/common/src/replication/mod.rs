//! Fault-tolerant partitions on two CPUs of one board: the FT engine's primary and backup as the
//! core's [`Replica`], over a log ring and an arbiter word in the ledger.
//!
//! The primary logs every time read and timer interrupt at its execution point and holds each
//! console line until the backup acknowledged the log up to it. The backup runs the same guest
//! from the same image, takes time and interrupts from the log, compares its console lines with
//! the logged ones and prints none of them, until it wins arbitration and goes live: then it
//! prints the lines the primary had not reported performed, and runs as the partition.

mod backup;
mod inject;
mod lag;
mod lines;
mod primary;

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tandem_core::config::{Ft, MAX_FT_PAIRS};
use tandem_core::point::register_hash;
use tandem_ft::link::ring::{Ring, RingConsumer, RingProducer};

pub use backup::BackupCopy;
pub use inject::{Injected, KillPoint, Stall};
pub use primary::PrimaryCopy;

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
