//! Shared-memory log link between two cores: a lock-free single-producer single-consumer ring of
//! fixed-size frame slots, with an ack index and a backup heartbeat word beside it.
//!
//! The one module of `ft` allowed `unsafe`: slots are shared between two cores through
//! `UnsafeCell`, ordered by the head and tail atomics.
#![allow(unsafe_code)]

use super::{LinkError, LinkStats, LogReceiver, LogSender};
use crate::frame::MAX_FRAME;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};

struct Slot {
    len: UnsafeCell<usize>,
    bytes: UnsafeCell<[u8; MAX_FRAME]>,
}

/// The ring as it lives in memory both cores map. `SLOTS` frames can be in flight.
pub struct Ring<const SLOTS: usize> {
    /// Frames published by the producer.
    head: AtomicU64,
    /// Frames the consumer has copied out (their slots may be reused).
    tail: AtomicU64,
    /// Frames the consumer has acknowledged.
    acked: AtomicU64,
    /// Bumped by the consumer on every ack call, so an idle backup still looks alive.
    beat: AtomicU64,
    slots: [Slot; SLOTS],
}

// SAFETY: a slot is written only by the producer while `head - tail < SLOTS` says the consumer is
// not reading it, and read only by the consumer after the producer's Release store of `head`
// published it; `split` hands out exactly one producer and one consumer.
unsafe impl<const SLOTS: usize> Sync for Ring<SLOTS> {}

impl<const SLOTS: usize> Default for Ring<SLOTS> {
    fn default() -> Self {
        Self {
            head: AtomicU64::new(0),
            tail: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            beat: AtomicU64::new(0),
            slots: core::array::from_fn(|_| Slot {
                len: UnsafeCell::new(0),
                bytes: UnsafeCell::new([0; MAX_FRAME]),
            }),
        }
    }
}

impl<const SLOTS: usize> Ring<SLOTS> {
    /// The two ends of the ring. Borrowing the ring mutably makes them the only ends.
    pub fn split(&mut self) -> (RingProducer<'_, SLOTS>, RingConsumer<'_, SLOTS>) {
        let ring: &Self = self;
        (
            RingProducer {
                ring,
                stats: LinkStats::default(),
            },
            RingConsumer {
                ring,
                stats: LinkStats::default(),
                bad_head: None,
            },
        )
    }

    fn slot(&self, index: u64) -> &Slot {
        // Widening the modulus back to usize is lossless: it is below SLOTS.
        &self.slots[(index % SLOTS as u64) as usize]
    }
}

/// The primary's end of a [`Ring`].
pub struct RingProducer<'a, const SLOTS: usize> {
    ring: &'a Ring<SLOTS>,
    stats: LinkStats,
}

/// The backup's end of a [`Ring`].
pub struct RingConsumer<'a, const SLOTS: usize> {
    ring: &'a Ring<SLOTS>,
    stats: LinkStats,
    /// The last impossible head seen, so a head stuck at one bad value is counted once.
    bad_head: Option<u64>,
}

impl<const SLOTS: usize> LogSender for RingProducer<'_, SLOTS> {
    fn send(&mut self, frame: &[u8]) -> Result<(), LinkError> {
        if frame.len() > MAX_FRAME {
            return Err(LinkError::FrameTooLarge {
                len: frame.len(),
                max: MAX_FRAME,
            });
        }
        let head = self.ring.head.load(Ordering::Relaxed);
        if head - self.ring.tail.load(Ordering::Acquire) >= SLOTS as u64 {
            return Err(LinkError::Full);
        }
        let slot = self.ring.slot(head);
        // SAFETY: `head - tail < SLOTS`, so the consumer has finished with this slot (its Release
        // store of `tail` ordered its reads before our Acquire load) and will not touch it until
        // the Release store of `head` below; we are the only producer.
        unsafe {
            (&mut *slot.bytes.get())[..frame.len()].copy_from_slice(frame);
            *slot.len.get() = frame.len();
        }
        self.ring.head.store(head + 1, Ordering::Release);
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += frame.len() as u64;
        Ok(())
    }

    fn acked(&self) -> u64 {
        self.ring.acked.load(Ordering::Acquire)
    }

    fn peer_activity(&self) -> u64 {
        self.ring.beat.load(Ordering::Acquire)
    }

    fn poll(&mut self, _now: u64) {}

    fn stats(&self) -> LinkStats {
        self.stats
    }
}

impl<const SLOTS: usize> LogReceiver for RingConsumer<'_, SLOTS> {
    fn recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>, LinkError> {
        loop {
            let tail = self.ring.tail.load(Ordering::Relaxed);
            let head = self.ring.head.load(Ordering::Acquire);
            if tail == head {
                return Ok(None);
            }
            // A sound producer keeps `tail < head <= tail + SLOTS`; a dying one may have written
            // anything. Nothing past `tail` can be trusted then: read nothing (silence lets the
            // detector take over), count the bad head once, and resume if it becomes sane again.
            if head < tail || head - tail > SLOTS as u64 {
                if self.bad_head != Some(head) {
                    self.bad_head = Some(head);
                    self.stats.dropped_corrupt += 1;
                }
                return Ok(None);
            }
            let slot = self.ring.slot(tail);
            // SAFETY: `tail < head`: the producer published this slot with a Release store of
            // `head` that our Acquire load observed, and will not rewrite it before we advance
            // `tail`.
            let len = unsafe { *slot.len.get() };
            if len > MAX_FRAME {
                // Skip the slot: the frame layer then refuses what follows as out of order, and
                // the backup's detector sees a silent primary instead of a wedged ring.
                self.stats.dropped_corrupt += 1;
                self.ring.tail.store(tail + 1, Ordering::Release);
                continue;
            }
            if len > buf.len() {
                return Err(LinkError::BufferTooSmall {
                    need: len,
                    have: buf.len(),
                });
            }
            // SAFETY: as above; `len <= MAX_FRAME` was checked just now.
            unsafe { buf[..len].copy_from_slice(&(&*slot.bytes.get())[..len]) };
            self.ring.tail.store(tail + 1, Ordering::Release);
            self.stats.frames_delivered += 1;
            return Ok(Some(len));
        }
    }

    fn ack(&mut self, received: u64) {
        self.ring.acked.fetch_max(received, Ordering::AcqRel);
        self.ring.beat.fetch_add(1, Ordering::AcqRel);
    }

    fn peer_activity(&self) -> u64 {
        self.ring.head.load(Ordering::Acquire)
    }

    fn poll(&mut self, _now: u64) {}

    fn stats(&self) -> LinkStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_pass_in_order_and_the_ring_applies_backpressure() {
        let mut ring = Ring::<4>::default();
        let (mut tx, mut rx) = ring.split();
        for i in 0..4u8 {
            tx.send(&[i; 10]).unwrap();
        }
        assert_eq!(tx.send(&[9]), Err(LinkError::Full));
        let mut buf = [0u8; MAX_FRAME];
        assert_eq!(rx.recv(&mut buf), Ok(Some(10)));
        assert_eq!(buf[..10], [0; 10]);
        tx.send(&[4; 3]).unwrap();
        for i in 1..5u8 {
            let n = rx.recv(&mut buf).unwrap().unwrap();
            assert_eq!(buf[0], i);
            assert!(n == 10 || i == 4);
        }
        assert_eq!(rx.recv(&mut buf), Ok(None));
        assert_eq!(tx.acked(), 0);
        rx.ack(5);
        rx.ack(3);
        assert_eq!(tx.acked(), 5, "acks never move backwards");
        assert_eq!(tx.stats().frames_sent, 5);
    }

    #[test]
    fn threads_see_every_frame_once_in_order() {
        let mut ring = Ring::<8>::default();
        let (mut tx, mut rx) = ring.split();
        std::thread::scope(|s| {
            s.spawn(move || {
                for i in 0..20_000u32 {
                    while tx.send(&i.to_le_bytes()).is_err() {
                        std::hint::spin_loop();
                    }
                }
            });
            s.spawn(move || {
                let mut buf = [0u8; MAX_FRAME];
                let mut next = 0u32;
                while next < 20_000 {
                    if let Some(n) = rx.recv(&mut buf).unwrap() {
                        assert_eq!(n, 4);
                        assert_eq!(u32::from_le_bytes(buf[..4].try_into().unwrap()), next);
                        next += 1;
                        rx.ack(u64::from(next));
                    }
                }
            });
        });
    }

    /// A dying producer scribbles on the ring: what the consumer reads must not be trusted.
    fn scribble_len<const SLOTS: usize>(ring: &Ring<SLOTS>, index: u64, len: usize) {
        // SAFETY: test only, no other end is active on this thread or any other.
        unsafe { *ring.slot(index).len.get() = len };
    }

    #[test]
    fn a_corrupt_length_is_skipped_and_counted_never_read_out_of_bounds() {
        let mut ring = Ring::<4>::default();
        let mut buf = [0u8; 2 * MAX_FRAME];
        {
            let (mut tx, _) = ring.split();
            for i in 0..3u8 {
                tx.send(&[i; 8]).unwrap();
            }
        }
        scribble_len(&ring, 0, MAX_FRAME + 1);
        scribble_len(&ring, 1, usize::MAX);
        let (_, mut rx) = ring.split();
        assert_eq!(
            rx.recv(&mut buf),
            Ok(Some(8)),
            "the corrupt slots are skipped"
        );
        assert_eq!(buf[..8], [2; 8]);
        assert_eq!(rx.stats().dropped_corrupt, 2);
        assert_eq!(rx.recv(&mut buf), Ok(None));
    }

    #[test]
    fn a_corrupt_head_is_counted_and_never_wedges_or_reads_unpublished_slots() {
        let mut ring = Ring::<4>::default();
        let mut buf = [0u8; MAX_FRAME];
        {
            let (mut tx, _) = ring.split();
            tx.send(&[1; 8]).unwrap();
        }
        // Far ahead of anything the producer could have published (more than a ring's worth).
        ring.head.store(1_000, Ordering::Release);
        let (_, mut rx) = ring.split();
        assert_eq!(rx.recv(&mut buf), Ok(None));
        assert_eq!(rx.recv(&mut buf), Ok(None));
        assert_eq!(
            rx.stats().dropped_corrupt,
            1,
            "one corrupt head, counted once"
        );
        // Behind the consumer: also impossible for a sound producer.
        ring.head.store(0, Ordering::Release);
        ring.tail.store(3, Ordering::Release);
        let (_, mut rx) = ring.split();
        assert_eq!(rx.recv(&mut buf), Ok(None));
        assert_eq!(rx.stats().dropped_corrupt, 1);
        // The producer recovers (or a new epoch resets the ring): frames flow again.
        ring.head.store(3, Ordering::Release);
        let (mut tx, mut rx) = ring.split();
        tx.send(&[7; 5]).unwrap();
        assert_eq!(rx.recv(&mut buf), Ok(Some(5)));
        assert_eq!(buf[..5], [7; 5]);
    }

    proptest::proptest! {
        #[test]
        fn any_scribble_leaves_the_consumer_bounded_and_panic_free(
            lens in proptest::collection::vec(proptest::prelude::any::<usize>(), 4),
            head in proptest::prelude::any::<u64>(),
        ) {
            let mut ring = Ring::<4>::default();
            for (i, len) in lens.iter().enumerate() {
                scribble_len(&ring, i as u64, *len);
            }
            ring.head.store(head, Ordering::Release);
            let (_, mut rx) = ring.split();
            let mut buf = [0u8; MAX_FRAME];
            // At most one ring's worth of frames is ever readable, then the consumer is idle.
            let mut read = 0;
            while rx.recv(&mut buf).unwrap().is_some() {
                read += 1;
                proptest::prop_assert!(read <= 4);
            }
        }
    }

    #[test]
    fn oversized_frames_are_refused() {
        let mut ring = Ring::<2>::default();
        let (mut tx, _) = ring.split();
        assert_eq!(
            tx.send(&[0; MAX_FRAME + 1]),
            Err(LinkError::FrameTooLarge {
                len: MAX_FRAME + 1,
                max: MAX_FRAME
            })
        );
    }
}
