//! Log link over an unreliable datagram transport (Ethernet between boards): go-back-N with
//! sequence numbers, cumulative acks, retransmission on timeout and a bounded send window.
//!
//! ```text
//! kind (1) | seq u64 (8) | payload | crc32c (4)      kind 1 = data (payload: one frame), 2 = ack
//! ```
//! A data datagram's `seq` is the frame's index on the link. An ack's `seq` is the number of frames
//! received, which moves the send window, and its payload the number of records the backup holds
//! (u64 LE), which the engine's output rule counts in: a frame carries several records. The CRC
//! covers everything before it, so a corrupted ack can never acknowledge a frame.

use super::{LinkError, LinkStats, LogReceiver, LogSender};
use crate::frame::MAX_FRAME;

/// A transport that may lose, duplicate, reorder, corrupt or delay datagrams.
pub trait Datagram {
    /// Send one datagram (best effort).
    fn send(&mut self, bytes: &[u8]);
    /// Receive one datagram into `buf` if one is waiting; longer datagrams are truncated to `buf`.
    fn recv(&mut self, buf: &mut [u8]) -> Option<usize>;
}

const KIND_DATA: u8 = 1;
const KIND_ACK: u8 = 2;
const OVERHEAD: usize = 1 + 8 + 4;
const ACK_LEN: usize = OVERHEAD + 8;
/// Largest datagram this link sends.
pub const MAX_DATAGRAM: usize = MAX_FRAME + OVERHEAD;

// Slice-by-16 tables: the CRC is on the path of every record.
const CRC: crc::Crc<u32, crc::Table<16>> = crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

fn write_datagram(kind: u8, seq: u64, payload: &[u8], out: &mut [u8; MAX_DATAGRAM]) -> usize {
    out[0] = kind;
    out[1..9].copy_from_slice(&seq.to_le_bytes());
    let end = 9 + payload.len();
    out[9..end].copy_from_slice(payload);
    let crc = CRC.checksum(&out[..end]);
    out[end..end + 4].copy_from_slice(&crc.to_le_bytes());
    end + 4
}

/// Validate a datagram; returns its kind, seq and payload.
fn parse_datagram(bytes: &[u8]) -> Option<(u8, u64, &[u8])> {
    if bytes.len() < OVERHEAD {
        return None;
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if CRC.checksum(body).to_le_bytes() != crc {
        return None;
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&body[1..9]);
    Some((body[0], u64::from_le_bytes(seq), &body[9..]))
}

/// Link settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DatagramConfig {
    /// Retransmit the unacknowledged window when no progress for this long (ns).
    pub retransmit_after: u64,
}

type FrameBuf = heapless::Vec<u8, MAX_FRAME>;

/// The primary's end: keeps up to `WINDOW` unacknowledged frames for retransmission.
pub struct DatagramSender<T: Datagram, const WINDOW: usize> {
    transport: T,
    config: DatagramConfig,
    /// Frames acknowledged by the receiver; `window[0]` is frame `base`.
    base: u64,
    /// Records the receiver acknowledged.
    acked_records: u64,
    window: heapless::Deque<FrameBuf, WINDOW>,
    now: u64,
    last_progress: u64,
    activity: u64,
    stats: LinkStats,
    scratch: [u8; MAX_DATAGRAM],
}

impl<T: Datagram, const WINDOW: usize> DatagramSender<T, WINDOW> {
    /// A sender over `transport`.
    pub fn new(transport: T, config: DatagramConfig) -> Self {
        Self {
            transport,
            config,
            base: 0,
            acked_records: 0,
            window: heapless::Deque::new(),
            now: 0,
            last_progress: 0,
            activity: 0,
            stats: LinkStats::default(),
            scratch: [0; MAX_DATAGRAM],
        }
    }
}

fn transmit<T: Datagram>(
    transport: &mut T,
    scratch: &mut [u8; MAX_DATAGRAM],
    seq: u64,
    frame: &[u8],
) {
    let n = write_datagram(KIND_DATA, seq, frame, scratch);
    transport.send(&scratch[..n]);
}

impl<T: Datagram, const WINDOW: usize> LogSender for DatagramSender<T, WINDOW> {
    fn send(&mut self, frame: &[u8]) -> Result<(), LinkError> {
        let copy = FrameBuf::from_slice(frame).map_err(|_| LinkError::FrameTooLarge {
            len: frame.len(),
            max: MAX_FRAME,
        })?;
        if self.window.is_empty() {
            self.last_progress = self.now;
        }
        let seq = self.base + self.window.len() as u64;
        self.window.push_back(copy).map_err(|_| LinkError::Full)?;
        transmit(&mut self.transport, &mut self.scratch, seq, frame);
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += frame.len() as u64;
        Ok(())
    }

    fn acked(&self) -> u64 {
        self.acked_records
    }

    fn peer_activity(&self) -> u64 {
        self.activity
    }

    fn poll(&mut self, now: u64) {
        self.now = now;
        let mut buf = [0u8; ACK_LEN];
        while let Some(n) = self.transport.recv(&mut buf) {
            match parse_datagram(&buf[..n]) {
                Some((KIND_ACK, count, records)) if records.len() == 8 => {
                    self.activity += 1;
                    let sent = self.base + self.window.len() as u64;
                    if count > sent {
                        // Acknowledges frames never sent: nothing it says can be trusted.
                        continue;
                    }
                    let mut word = [0u8; 8];
                    word.copy_from_slice(records);
                    // Acks may arrive out of order: the count never moves back.
                    self.acked_records = self.acked_records.max(u64::from_le_bytes(word));
                    if count > self.base {
                        for _ in self.base..count {
                            self.window.pop_front();
                        }
                        self.base = count;
                        self.last_progress = now;
                    }
                }
                _ => self.stats.dropped_corrupt += 1,
            }
        }
        if !self.window.is_empty() && now - self.last_progress >= self.config.retransmit_after {
            for (i, frame) in self.window.iter().enumerate() {
                transmit(
                    &mut self.transport,
                    &mut self.scratch,
                    self.base + i as u64,
                    frame,
                );
            }
            self.stats.retransmits += self.window.len() as u64;
            self.last_progress = now;
        }
    }

    fn stats(&self) -> LinkStats {
        self.stats
    }
}

/// The backup's end: accepts exactly the next frame, drops everything else, acks cumulatively.
pub struct DatagramReceiver<T: Datagram> {
    transport: T,
    expected: u64,
    activity: u64,
    stats: LinkStats,
    scratch: [u8; MAX_DATAGRAM],
}

impl<T: Datagram> DatagramReceiver<T> {
    /// A receiver over `transport`.
    pub fn new(transport: T) -> Self {
        Self {
            transport,
            expected: 0,
            activity: 0,
            stats: LinkStats::default(),
            scratch: [0; MAX_DATAGRAM],
        }
    }
}

impl<T: Datagram> LogReceiver for DatagramReceiver<T> {
    fn recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>, LinkError> {
        while let Some(n) = self.transport.recv(&mut self.scratch) {
            let Some((KIND_DATA, seq, payload)) = parse_datagram(&self.scratch[..n]) else {
                self.stats.dropped_corrupt += 1;
                continue;
            };
            self.activity += 1;
            if seq < self.expected {
                self.stats.dropped_duplicate += 1;
                continue;
            }
            if seq > self.expected {
                self.stats.dropped_out_of_order += 1;
                continue;
            }
            if payload.len() > buf.len() {
                return Err(LinkError::BufferTooSmall {
                    need: payload.len(),
                    have: buf.len(),
                });
            }
            buf[..payload.len()].copy_from_slice(payload);
            self.expected += 1;
            return Ok(Some(payload.len()));
        }
        Ok(None)
    }

    fn ack(&mut self, received: u64) {
        let n = write_datagram(
            KIND_ACK,
            self.expected,
            &received.to_le_bytes(),
            &mut self.scratch,
        );
        self.transport.send(&self.scratch[..n]);
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += n as u64;
    }

    fn peer_activity(&self) -> u64 {
        self.activity
    }

    fn poll(&mut self, _now: u64) {}

    fn stats(&self) -> LinkStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::rc::Rc;

    /// One direction of a lossy wire: drops every `drop_every`-th datagram and duplicates the rest.
    #[derive(Default)]
    struct Wire {
        queue: VecDeque<Vec<u8>>,
        sent: u64,
        drop_every: u64,
        duplicate: bool,
    }

    #[derive(Clone)]
    struct Port {
        out: Rc<RefCell<Wire>>,
        inp: Rc<RefCell<Wire>>,
    }

    impl Datagram for Port {
        fn send(&mut self, bytes: &[u8]) {
            let mut w = self.out.borrow_mut();
            w.sent += 1;
            if w.drop_every != 0 && w.sent.is_multiple_of(w.drop_every) {
                return;
            }
            w.queue.push_back(bytes.to_vec());
            if w.duplicate {
                w.queue.push_back(bytes.to_vec());
            }
        }
        fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
            let d = self.inp.borrow_mut().queue.pop_front()?;
            let n = d.len().min(buf.len());
            buf[..n].copy_from_slice(&d[..n]);
            Some(n)
        }
    }

    fn pair(drop_every: u64, duplicate: bool) -> (Port, Port) {
        let a = Rc::new(RefCell::new(Wire {
            drop_every,
            duplicate,
            ..Wire::default()
        }));
        let b = Rc::new(RefCell::new(Wire {
            drop_every,
            ..Wire::default()
        }));
        (
            Port {
                out: a.clone(),
                inp: b.clone(),
            },
            Port { out: b, inp: a },
        )
    }

    #[test]
    fn lossy_duplicating_wire_delivers_every_frame_once_in_order() {
        let (a, b) = pair(3, true);
        let mut tx = DatagramSender::<_, 4>::new(
            a,
            DatagramConfig {
                retransmit_after: 10,
            },
        );
        let mut rx = DatagramReceiver::new(b);
        let mut got = Vec::new();
        let mut next = 0u8;
        let mut buf = [0u8; MAX_FRAME];
        for now in 0..2_000u64 {
            while next < 50 && tx.send(&[next; 5]).is_ok() {
                next += 1;
            }
            while let Some(n) = rx.recv(&mut buf).unwrap() {
                got.push(buf[..n].to_vec());
            }
            rx.ack(got.len() as u64);
            tx.poll(now);
        }
        let want: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; 5]).collect();
        assert_eq!(got, want);
        assert_eq!(tx.acked(), 50);
        assert!(tx.stats().retransmits > 0);
        assert!(rx.stats().dropped_duplicate > 0);
    }

    #[test]
    fn window_bounds_unacknowledged_frames() {
        let (a, _b) = pair(0, false);
        let mut tx = DatagramSender::<_, 2>::new(
            a,
            DatagramConfig {
                retransmit_after: 10,
            },
        );
        tx.send(&[1]).unwrap();
        tx.send(&[2]).unwrap();
        assert_eq!(tx.send(&[3]), Err(LinkError::Full));
    }

    #[test]
    fn corrupted_or_bogus_acks_acknowledge_nothing() {
        let (a, b) = pair(0, false);
        let mut tx = DatagramSender::<_, 2>::new(
            a,
            DatagramConfig {
                retransmit_after: 10,
            },
        );
        let mut raw = b.clone();
        tx.send(&[1]).unwrap();
        let mut d = [0u8; MAX_DATAGRAM];
        let n = write_datagram(KIND_ACK, 1, &3u64.to_le_bytes(), &mut d);
        d[3] ^= 0x40;
        raw.send(&d[..n]);
        let n = write_datagram(KIND_ACK, 1, &[3], &mut d);
        raw.send(&d[..n]);
        tx.poll(1);
        assert_eq!(tx.acked(), 0);
        assert_eq!(tx.stats().dropped_corrupt, 2);
        // An ack for frames never sent acknowledges nothing.
        let n = write_datagram(KIND_ACK, 7, &3u64.to_le_bytes(), &mut d);
        raw.send(&d[..n]);
        tx.poll(2);
        assert_eq!(tx.acked(), 0);
        assert_eq!(tx.stats().dropped_corrupt, 2);
    }

    #[test]
    fn acks_count_records_and_move_the_window_by_frames() {
        let (a, b) = pair(0, false);
        let mut tx = DatagramSender::<_, 2>::new(
            a,
            DatagramConfig {
                retransmit_after: 10,
            },
        );
        let mut rx = DatagramReceiver::new(b);
        tx.send(&[1]).unwrap();
        tx.send(&[2]).unwrap();
        let mut buf = [0u8; MAX_FRAME];
        while rx.recv(&mut buf).unwrap().is_some() {}
        // Two frames holding five records between them.
        rx.ack(5);
        tx.poll(1);
        assert_eq!(tx.acked(), 5);
        tx.send(&[3]).unwrap();
        tx.send(&[4]).unwrap();
        assert_eq!(tx.send(&[5]), Err(LinkError::Full), "two frames in flight");
    }
}
