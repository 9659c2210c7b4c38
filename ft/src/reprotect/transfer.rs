//! Re-protection across boards: the partition's memory and vCPU state as frames over a reliable,
//! ordered link ([`crate::link::datagram`]) to the spare board. [`Outgoing`] turns what the
//! [`super::Reprotect`] machine says to send into frames (a run of all-zero pages is one frame, a
//! page with data is split into pieces that fit a frame); [`Incoming`] checks each received frame
//! against the partition's size before anything is written: every byte from the wire is a lie
//! until it fits.

use heapless::Deque;
use serde::{Deserialize, Serialize};
use tandem_core::config::PAGE_SIZE;

use crate::frame::MAX_FRAME;

/// Bytes of a page one frame carries: with its header a piece fits [`MAX_FRAME`].
pub const PIECE: usize = 480;
const PAGE: usize = PAGE_SIZE as usize;

/// One frame of the transfer.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Pages `first..first + count` hold only zeros.
    Zeros { first: u64, count: u64 },
    /// Bytes of page `page` from `offset`.
    Page {
        page: u64,
        offset: u16,
        #[serde(borrow)]
        bytes: &'a [u8],
    },
    /// Bytes of the vCPU snapshot from `offset` (sent in order, after the last pages).
    State {
        offset: u32,
        #[serde(borrow)]
        bytes: &'a [u8],
    },
    /// The snapshot is complete; the guest's time at it, in nanoseconds since it started.
    End { guest_ns: u64 },
}

const _: () = assert!(PIECE + 1 + 10 + 3 + 2 <= MAX_FRAME);

/// Where [`Outgoing`] reads what it sends.
pub trait Source {
    /// Copies page `page` of the partition into `out`; `false` if there is no such page.
    fn page(&mut self, page: u64, out: &mut [u8; PAGE]) -> bool;
    /// Copies the snapshot's bytes from `offset` into `out`.
    fn state(&mut self, offset: usize, out: &mut [u8]);
}

/// What the sending side sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutgoingStats {
    pub frames: u64,
    pub zero_pages: u64,
    pub data_pages: u64,
    pub state_bytes: u64,
}

/// Why the sending side cannot go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// More pages queued than the queue holds: the caller asked for more than a step's worth.
    QueueFull,
    /// The source has no such page.
    NoPage(u64),
}

/// The page being sent in pieces.
#[derive(Clone, Copy, Debug)]
struct Current {
    page: u64,
    offset: usize,
}

/// The sending side: pages queued by the re-protection machine's steps, then the snapshot and the
/// end. A frame built while the link had no room waits and goes first next time.
pub struct Outgoing<const Q: usize> {
    queue: Deque<u64, Q>,
    current: Option<Current>,
    buf: [u8; PAGE],
    /// A frame built and not yet taken by the link.
    frame: [u8; MAX_FRAME],
    frame_len: usize,
    /// Snapshot bytes still to send: `(next offset, length)`, then the end with its time.
    state: Option<(usize, usize)>,
    end: Option<u64>,
    stats: OutgoingStats,
}

impl<const Q: usize> Default for Outgoing<Q> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const Q: usize> Outgoing<Q> {
    pub const fn new() -> Self {
        Self {
            queue: Deque::new(),
            current: None,
            buf: [0; PAGE],
            frame: [0; MAX_FRAME],
            frame_len: 0,
            state: None,
            end: None,
            stats: OutgoingStats {
                frames: 0,
                zero_pages: 0,
                data_pages: 0,
                state_bytes: 0,
            },
        }
    }

    /// Queues pages to send.
    pub fn queue_pages(&mut self, pages: impl IntoIterator<Item = u64>) -> Result<(), SendError> {
        for page in pages {
            self.queue
                .push_back(page)
                .map_err(|_| SendError::QueueFull)?;
        }
        Ok(())
    }

    /// Queues the snapshot of `len` bytes and the end, after the queued pages.
    pub fn queue_state(&mut self, len: usize, guest_ns: u64) {
        self.state = Some((0, len));
        self.end = Some(guest_ns);
    }

    /// Everything queued went to the link.
    pub fn idle(&self) -> bool {
        self.frame_len == 0
            && self.current.is_none()
            && self.queue.is_empty()
            && self.state.is_none()
            && self.end.is_none()
    }

    pub fn stats(&self) -> OutgoingStats {
        self.stats
    }

    /// Hands frames to `send` (which says whether the link took it) until it takes no more or
    /// nothing is left.
    pub fn pump(
        &mut self,
        source: &mut impl Source,
        mut send: impl FnMut(&[u8]) -> bool,
    ) -> Result<(), SendError> {
        loop {
            if self.frame_len == 0 {
                self.frame_len = self.build(source)?;
                if self.frame_len == 0 {
                    return Ok(());
                }
            }
            if !send(&self.frame[..self.frame_len]) {
                return Ok(());
            }
            self.frame_len = 0;
            self.stats.frames += 1;
        }
    }

    /// Encodes the next frame; 0 when nothing is left.
    fn build(&mut self, source: &mut impl Source) -> Result<usize, SendError> {
        let piece_buf = &mut [0u8; PIECE];
        let piece = if let Some(Current { page, offset }) = self.current {
            let end = (offset + PIECE).min(PAGE);
            self.current = (end < PAGE).then_some(Current { page, offset: end });
            Piece::Page {
                page,
                offset: offset as u16,
                bytes: &self.buf[offset..end],
            }
        } else if let Some(first) = self.queue.pop_front() {
            if !source.page(first, &mut self.buf) {
                return Err(SendError::NoPage(first));
            }
            if self.buf.iter().any(|&b| b != 0) {
                self.stats.data_pages += 1;
                self.current = Some(Current {
                    page: first,
                    offset: 0,
                });
                return self.build(source);
            }
            // A run of zero pages, as long as the queue goes on with the next page and it is
            // zero too; the first page that is not becomes the current one.
            let mut count = 1;
            while self.queue.front() == Some(&(first + count)) {
                let page = first + count;
                self.queue.pop_front();
                if !source.page(page, &mut self.buf) {
                    return Err(SendError::NoPage(page));
                }
                if self.buf.iter().any(|&b| b != 0) {
                    self.stats.data_pages += 1;
                    self.current = Some(Current { page, offset: 0 });
                    break;
                }
                count += 1;
            }
            self.stats.zero_pages += count;
            Piece::Zeros { first, count }
        } else if let Some((offset, len)) = self.state {
            let n = (len - offset).min(PIECE);
            source.state(offset, &mut piece_buf[..n]);
            self.state = (offset + n < len).then_some((offset + n, len));
            self.stats.state_bytes += n as u64;
            Piece::State {
                offset: offset as u32,
                bytes: &piece_buf[..n],
            }
        } else if let Some(guest_ns) = self.end.take() {
            Piece::End { guest_ns }
        } else {
            return Ok(0);
        };
        // Cannot fail: every piece fits a frame (the assertion on `PIECE`).
        Ok(postcard::to_slice(&piece, &mut self.frame).map_or(0, |b| b.len()))
    }
}

/// Where [`Incoming`] writes what it accepted.
pub trait Sink {
    /// Zeroes pages `first..first + count` (in range).
    fn zero(&mut self, first: u64, count: u64);
    /// Writes `bytes` into page `page` from `offset` (in range).
    fn write(&mut self, page: u64, offset: usize, bytes: &[u8]);
    /// Writes snapshot bytes from `offset` (in range).
    fn state(&mut self, offset: usize, bytes: &[u8]);
}

/// Why a received frame was refused (and the transfer with it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// Not a piece at all.
    Malformed,
    /// Pages past the partition's end.
    PageOutOfRange { page: u64 },
    /// Bytes past the end of their page.
    PastPageEnd { page: u64, offset: u16, len: usize },
    /// Snapshot bytes out of order or past its end.
    StateOutOfPlace { offset: u32, expected: usize },
    /// The end before the whole snapshot.
    EarlyEnd { state_bytes: usize, expected: usize },
    /// Anything after the end.
    AfterEnd,
}

/// What an accepted frame did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// Written; more to come.
    Written,
    /// The transfer is complete: the guest's time at the snapshot.
    Complete { guest_ns: u64 },
}

/// What the receiving side took in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IncomingStats {
    pub frames: u64,
    pub zero_pages: u64,
    pub page_pieces: u64,
    pub state_bytes: u64,
}

/// The receiving side: the partition's page count and the snapshot's size, both as this board's
/// image has them, bound every write.
pub struct Incoming {
    pages: u64,
    state_len: usize,
    state_got: usize,
    done: bool,
    stats: IncomingStats,
}

impl Incoming {
    pub const fn new(pages: u64, state_len: usize) -> Self {
        Self {
            pages,
            state_len,
            state_got: 0,
            done: false,
            stats: IncomingStats {
                frames: 0,
                zero_pages: 0,
                page_pieces: 0,
                state_bytes: 0,
            },
        }
    }

    pub fn stats(&self) -> IncomingStats {
        self.stats
    }

    /// Checks one received frame and writes what it carries into `sink`.
    pub fn accept(&mut self, frame: &[u8], sink: &mut impl Sink) -> Result<Accepted, Rejected> {
        if self.done {
            return Err(Rejected::AfterEnd);
        }
        let piece: Piece<'_> = postcard::from_bytes(frame).map_err(|_| Rejected::Malformed)?;
        match piece {
            Piece::Zeros { first, count } => {
                let end = first.checked_add(count).filter(|&e| e <= self.pages);
                if count == 0 || end.is_none() {
                    return Err(Rejected::PageOutOfRange {
                        page: first.saturating_add(count),
                    });
                }
                sink.zero(first, count);
                self.stats.zero_pages += count;
            }
            Piece::Page {
                page,
                offset,
                bytes,
            } => {
                if page >= self.pages {
                    return Err(Rejected::PageOutOfRange { page });
                }
                if usize::from(offset) + bytes.len() > PAGE {
                    return Err(Rejected::PastPageEnd {
                        page,
                        offset,
                        len: bytes.len(),
                    });
                }
                sink.write(page, usize::from(offset), bytes);
                self.stats.page_pieces += 1;
            }
            Piece::State { offset, bytes } => {
                if offset as usize != self.state_got
                    || self.state_got + bytes.len() > self.state_len
                {
                    return Err(Rejected::StateOutOfPlace {
                        offset,
                        expected: self.state_got,
                    });
                }
                sink.state(self.state_got, bytes);
                self.state_got += bytes.len();
                self.stats.state_bytes += bytes.len() as u64;
            }
            Piece::End { guest_ns } => {
                if self.state_got != self.state_len {
                    return Err(Rejected::EarlyEnd {
                        state_bytes: self.state_got,
                        expected: self.state_len,
                    });
                }
                self.done = true;
                self.stats.frames += 1;
                return Ok(Accepted::Complete { guest_ns });
            }
        }
        self.stats.frames += 1;
        Ok(Accepted::Written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    struct Memory {
        pages: Vec<[u8; PAGE]>,
        state: Vec<u8>,
    }

    impl Source for Memory {
        fn page(&mut self, page: u64, out: &mut [u8; PAGE]) -> bool {
            self.pages
                .get(page as usize)
                .map(|p| out.copy_from_slice(p))
                .is_some()
        }
        fn state(&mut self, offset: usize, out: &mut [u8]) {
            out.copy_from_slice(&self.state[offset..offset + out.len()]);
        }
    }

    impl Sink for Memory {
        fn zero(&mut self, first: u64, count: u64) {
            for page in &mut self.pages[first as usize..(first + count) as usize] {
                page.fill(0);
            }
        }
        fn write(&mut self, page: u64, offset: usize, bytes: &[u8]) {
            self.pages[page as usize][offset..offset + bytes.len()].copy_from_slice(bytes);
        }
        fn state(&mut self, offset: usize, bytes: &[u8]) {
            self.state[offset..offset + bytes.len()].copy_from_slice(bytes);
        }
    }

    fn memory(pages: usize, state: usize, seed: u8) -> Memory {
        Memory {
            pages: (0..pages)
                .map(|p| {
                    let mut page = [0u8; PAGE];
                    if p % 3 == 1 {
                        page[p % PAGE] = seed ^ p as u8 | 1;
                        page[PAGE - 1] = seed;
                    }
                    page
                })
                .collect(),
            state: (0..state).map(|i| i as u8 ^ seed).collect(),
        }
    }

    /// Sends `from`'s pages in steps of `step` through a link that takes `room` frames per call.
    fn transfer(from: &mut Memory, to: &mut Memory, step: u64, room: usize) -> OutgoingStats {
        let mut out = Outgoing::<64>::new();
        let mut incoming = Incoming::new(to.pages.len() as u64, to.state.len());
        let mut wire: Vec<Vec<u8>> = Vec::new();
        let pages = from.pages.len() as u64;
        let mut next = 0;
        loop {
            if out.idle() && next < pages {
                let count = step.min(pages - next);
                out.queue_pages(next..next + count).unwrap();
                next += count;
                if next == pages {
                    out.queue_state(from.state.len(), 77);
                }
            }
            let mut taken = 0;
            out.pump(from, |f| {
                taken += 1;
                wire.push(f.to_vec());
                taken <= room
            })
            .unwrap();
            wire.truncate(wire.len() - usize::from(taken > room));
            if out.idle() && next == pages {
                break;
            }
        }
        let mut complete = None;
        for frame in &wire {
            if let Accepted::Complete { guest_ns } = incoming.accept(frame, to).unwrap() {
                complete = Some(guest_ns);
            }
        }
        assert_eq!(complete, Some(77));
        out.stats()
    }

    #[test]
    fn pages_and_state_arrive_whole_and_zero_runs_are_one_frame() {
        let mut from = memory(64, 1500, 0x5a);
        let mut to = memory(64, 1500, 0xc3);
        let stats = transfer(&mut from, &mut to, 16, 5);
        assert!(from.pages == to.pages, "memory differs after the transfer");
        assert_eq!(from.state, to.state);
        assert_eq!(stats.data_pages, 21);
        assert_eq!(stats.zero_pages, 43);
        // Nine pieces per page with data, one frame per run of zero pages (22, and the run over
        // pages 47 and 48 split by the end of a step), four of state, one end.
        assert_eq!(stats.frames, 21 * 9 + 23 + 4 + 1);
    }

    #[test]
    fn writes_outside_the_partition_or_snapshot_are_refused() {
        let mut to = memory(4, 8, 0);
        let mut incoming = Incoming::new(4, 8);
        let mut frame = [0u8; MAX_FRAME];
        let mut encode = |p: Piece<'_>| postcard::to_slice(&p, &mut frame).unwrap().to_vec();
        let bad = [
            Piece::Zeros { first: 3, count: 2 },
            Piece::Zeros {
                first: u64::MAX,
                count: 2,
            },
            Piece::Page {
                page: 4,
                offset: 0,
                bytes: &[1],
            },
            Piece::Page {
                page: 0,
                offset: 4090,
                bytes: &[1; 7],
            },
            Piece::State {
                offset: 1,
                bytes: &[1],
            },
            Piece::State {
                offset: 0,
                bytes: &[1; 9],
            },
            Piece::End { guest_ns: 1 },
        ];
        for piece in bad {
            let frame = encode(piece);
            assert!(incoming.accept(&frame, &mut to).is_err(), "{piece:?}");
        }
        assert_eq!(
            incoming.accept(&[9, 9, 9], &mut to),
            Err(Rejected::Malformed)
        );
        let end = encode(Piece::State {
            offset: 0,
            bytes: &[1; 8],
        });
        assert_eq!(incoming.accept(&end, &mut to), Ok(Accepted::Written));
        let end = encode(Piece::End { guest_ns: 5 });
        assert_eq!(
            incoming.accept(&end, &mut to),
            Ok(Accepted::Complete { guest_ns: 5 })
        );
        assert_eq!(incoming.accept(&end, &mut to), Err(Rejected::AfterEnd));
    }

    proptest! {
        #[test]
        fn random_frames_never_write_out_of_bounds(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 0..64)
        ) {
            // The sink's slices panic on any write out of bounds.
            let mut to = memory(8, 100, 0);
            let mut incoming = Incoming::new(8, 100);
            for frame in &frames {
                let _ = incoming.accept(frame, &mut to);
            }
        }
    }
}
