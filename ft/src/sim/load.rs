//! The datagram link alone under a saturating load, to measure what it can carry under network
//! faults: the sender always has a frame waiting, the receiver takes every frame as it comes and
//! acknowledges what it took (at least every [`ACK_PERIOD`], as the backup's engine does), both
//! polled every microsecond of simulated time over the simulator's network. The engine never loads
//! the link this hard; this is its headroom.

use super::net::{Net, Port, WireFaults};
use super::rng::Rng;
use crate::link::datagram::{DatagramConfig, DatagramReceiver, DatagramSender};
use crate::link::{LinkStats, LogReceiver, LogSender};
use core::ops::Range;

const US: u64 = 1_000;
/// The receiver acknowledges at least this often (ns) even when no frame arrived.
pub const ACK_PERIOD: u64 = 50 * US;
/// Bytes per frame: about a frame of the I/O-heavy guest.
pub const FRAME: usize = 64;
/// Send window, as the simulator's pairs use.
pub const WINDOW: usize = 32;

/// What a saturating run carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Load {
    /// Frames delivered in order.
    pub frames: u64,
    /// Frames delivered out of order, twice or damaged: must be 0.
    pub misdelivered: u64,
    /// The sender's counters.
    pub sender: LinkStats,
    /// The receiver's counters.
    pub receiver: LinkStats,
}

/// Frame `n`: its number, then filler, so that the receiver can tell which frame it got.
fn frame(n: u64) -> [u8; FRAME] {
    let mut f = [n as u8; FRAME];
    f[..8].copy_from_slice(&n.to_le_bytes());
    f
}

/// Load the link for `duration` (ns) under `faults`, cut during `partition` if given, the
/// network's randomness drawn from `seed`; the retransmission timeout covers a round trip at the
/// longest delay.
pub fn saturate(
    faults: WireFaults,
    partition: Option<Range<u64>>,
    duration: u64,
    seed: u64,
) -> Load {
    let net = Net::new(faults, Rng::new(seed));
    let (a, b) = Port::pair(&net);
    let config = DatagramConfig::new(1, 2 * faults.delay_max + 40 * US);
    let mut tx = DatagramSender::<_, WINDOW>::new(a, config);
    let mut rx = DatagramReceiver::<_, WINDOW>::new(b, config);
    let mut load = Load::default();
    let (mut sent, mut acked_at) = (0u64, 0u64);
    let mut buf = [0u8; FRAME];
    for now in (0..duration).step_by(US as usize) {
        {
            let mut net = net.borrow_mut();
            net.set_now(now);
            net.partitioned = partition.as_ref().is_some_and(|p| p.contains(&now));
        }
        tx.poll(now);
        // A frame of `FRAME` bytes is refused only when the window is full.
        while tx.send(&frame(sent)).is_ok() {
            sent += 1;
        }
        rx.poll(now);
        let before = load.frames;
        while let Ok(Some(n)) = rx.recv(&mut buf) {
            if buf[..n] == frame(load.frames) {
                load.frames += 1;
            } else {
                load.misdelivered += 1;
            }
        }
        if load.frames != before || now - acked_at >= ACK_PERIOD {
            rx.ack(load.frames);
            acked_at = now;
        }
    }
    load.sender = tx.stats();
    load.receiver = rx.stats();
    load
}
