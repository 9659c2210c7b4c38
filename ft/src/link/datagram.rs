//! Log link over an unreliable datagram transport (Ethernet between boards): selective repeat
//! with a receive window, selective acknowledgements, fast retransmit, pacing and per-frame
//! timeouts.
//!
//! ```text
//! data: tag 0x21 (1) | epoch u32 (4) | seq u64 (8)       | frame (0..=MAX_FRAME)      | crc (4)
//! ack:  tag 0x22 (1) | epoch u32 (4) | delivered u64 (8) | sack u64 (8) | records (8) | crc (4)
//! ```
//! Integers are little-endian (`records` a u64); `crc` is a CRC-32C. The tag's high nibble is the
//! format (2: go-back-N's datagrams began with 1 or 2 and are refused), its low nibble the kind.
//! A data datagram's `seq` is the frame's index on the link. An ack's `delivered` counts the
//! frames the receiver handed to the engine, which moves the send window; bit `i` of `sack` says
//! the receiver holds frame `delivered + i`, so the sender resends only what is missing;
//! `records` is the number of records the backup holds, which the engine's output rule counts (a
//! frame carries several).
//! `epoch` is the protection epoch of the pair the link serves: each end drops datagrams of any
//! other, so neither datagrams still in flight from an earlier pair nor a zombie of one can feed
//! or acknowledge a later pair's link. The CRC covers everything before it; a datagram with a
//! wrong CRC, length, tag or field is counted and dropped, never trusted.
//!
//! The sender keeps up to `WINDOW` frames until the receiver delivered them. Each frame has its own
//! timeout, doubled by every retransmission of it up to a cap; a frame that acks report missing
//! while frames after it arrived is resent at once (fast retransmit), at most once per round
//! trip. Every data datagram leaves through a token bucket, so neither a timeout nor a healed
//! partition puts the whole window on the wire in one burst. The receiver holds frames that
//! arrive ahead of a missing one in its own window and delivers them in order, each once; it
//! takes datagrams from the transport only when the engine reads, so a backup that stopped
//! replaying neither takes nor acknowledges anything.

use super::{LinkError, LinkStats, LogReceiver, LogSender};
use crate::frame::MAX_FRAME;

/// A transport that may lose, duplicate, reorder, corrupt or delay datagrams.
pub trait Datagram {
    /// Send one datagram (best effort).
    fn send(&mut self, bytes: &[u8]);
    /// Receive one datagram into `buf` if one is waiting; longer datagrams are truncated to `buf`.
    fn recv(&mut self, buf: &mut [u8]) -> Option<usize>;
}

/// Format 2 in the tag's high nibble.
const FORMAT: u8 = 0x20;
const TAG_DATA: u8 = FORMAT | 1;
const TAG_ACK: u8 = FORMAT | 2;
/// Tag, epoch and sequence number (or delivered count).
const HEADER: usize = 1 + 4 + 8;
const CRC_LEN: usize = 4;
const ACK_LEN: usize = HEADER + 8 + 8 + CRC_LEN;
/// Largest datagram this link sends or accepts.
pub const MAX_DATAGRAM: usize = HEADER + MAX_FRAME + CRC_LEN;
// Fits one Ethernet payload with room for the framing around it.
const _: () = assert!(MAX_DATAGRAM <= 1400);
/// Frames an ack can report held beyond the delivered ones: the largest window either end takes.
pub const SACK_BITS: usize = 64;
/// Acks that must report a frame missing (while later ones arrived) before it is resent early.
const FAST_RETRANSMIT_REPORTS: u8 = 3;
/// Most datagrams one call takes from the transport, so that a flood cannot hold the caller.
const DRAIN_LIMIT: usize = 256;

// Slice-by-16 tables: the CRC is on the path of every record.
const CRC: crc::Crc<u32, crc::Table<16>> = crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

/// What an ack says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ack {
    delivered: u64,
    sack: u64,
    records: u64,
}

/// A datagram whose length, CRC and tag are sound (its epoch is the caller's business).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wire<'a> {
    Data { seq: u64, frame: &'a [u8] },
    Ack(Ack),
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    let word = bytes.get(at..at + 8)?;
    Some(u64::from_le_bytes(word.try_into().ok()?))
}

/// Check a datagram from the wire; returns its epoch and contents, or `None` if anything is off.
fn parse(bytes: &[u8]) -> Option<(u32, Wire<'_>)> {
    if !(HEADER + CRC_LEN..=MAX_DATAGRAM).contains(&bytes.len()) {
        return None;
    }
    let (body, crc) = bytes.split_at(bytes.len() - CRC_LEN);
    if CRC.checksum(body).to_le_bytes() != crc {
        return None;
    }
    let epoch = u32::from_le_bytes(body.get(1..5)?.try_into().ok()?);
    let seq = u64_at(body, 5)?;
    let rest = body.get(HEADER..)?;
    let wire = match *body.first()? {
        TAG_DATA => Wire::Data { seq, frame: rest },
        TAG_ACK if rest.len() == ACK_LEN - HEADER - CRC_LEN => Wire::Ack(Ack {
            delivered: seq,
            sack: u64_at(rest, 0)?,
            records: u64_at(rest, 8)?,
        }),
        _ => return None,
    };
    Some((epoch, wire))
}

/// Write the header, `payload` and the CRC into `out`; returns the datagram's length.
fn write(out: &mut [u8; MAX_DATAGRAM], tag: u8, epoch: u32, seq: u64, payload: &[u8]) -> usize {
    out[0] = tag;
    out[1..5].copy_from_slice(&epoch.to_le_bytes());
    out[5..HEADER].copy_from_slice(&seq.to_le_bytes());
    let end = HEADER + payload.len();
    out[HEADER..end].copy_from_slice(payload);
    let crc = CRC.checksum(&out[..end]);
    out[end..end + CRC_LEN].copy_from_slice(&crc.to_le_bytes());
    end + CRC_LEN
}

/// Link settings; times in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DatagramConfig {
    /// Protection epoch of the pair the link serves: datagrams of any other are dropped.
    pub epoch: u32,
    /// Resend a frame the receiver does not hold this long after it was last sent; the timeout
    /// doubles with each retransmission of the frame.
    pub retransmit_after: u64,
    /// The doubling stops after this many retransmissions, so that the link notices a healed
    /// partition within `retransmit_after << max_backoff` (only the oldest frame is resent while
    /// nothing gets through: that probe costs one datagram per timeout).
    pub max_backoff: u32,
    /// Mean gap between data datagrams: the token bucket earns one token per gap (0: no pacing).
    pub pace_gap: u64,
    /// Data datagrams that may leave back to back: the bucket's size (at least 1).
    pub pace_burst: u32,
}

impl DatagramConfig {
    /// Settings for epoch `epoch` with timeout `retransmit_after`: backoff up to 16 times the
    /// timeout, and at most 4 data datagrams back to back, then one a microsecond (about the
    /// line rate of 1 GbE for the log's typical frames of some 100 bytes on the wire; a window of
    /// full frames waits in the NIC's queue rather than in a switch's).
    pub const fn new(epoch: u32, retransmit_after: u64) -> Self {
        Self {
            epoch,
            retransmit_after,
            max_backoff: 4,
            pace_gap: 1_000,
            pace_burst: 4,
        }
    }
}

type FrameBuf = heapless::Vec<u8, MAX_FRAME>;

/// Where frame `seq` lives in a window of `window` slots.
fn slot_of(seq: u64, window: usize) -> usize {
    (seq % window as u64) as usize
}

/// A frame in the send window.
#[derive(Debug)]
struct Slot {
    frame: FrameBuf,
    /// When it was last put on the wire.
    sent_at: u64,
    /// It was sent more than once: an ack no longer tells which sending it answers.
    resent: bool,
    /// Retransmissions since the receiver last showed the frames get through: the timeout
    /// doubles with each.
    backoff: u32,
    /// The receiver holds it (an ack's SACK bit): it is never sent again.
    held: bool,
    /// Acks that reported it missing while frames after it had arrived, since it was last sent.
    missing: u8,
}

impl Slot {
    const EMPTY: Slot = Slot {
        frame: FrameBuf::new(),
        sent_at: 0,
        resent: false,
        backoff: 0,
        held: false,
        missing: 0,
    };
}

/// A smoothed round trip and its mean deviation (RFC 6298, 2): the timeout follows the path's
/// queueing. A fixed timeout shorter than a loaded path's round trip resends every frame, and
/// every resend adds an ack to the queue that delayed them: the link collapses into resends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RoundTrip {
    smoothed: u64,
    deviation: u64,
}

impl RoundTrip {
    fn first(sample: u64) -> Self {
        Self {
            smoothed: sample,
            deviation: sample / 2,
        }
    }

    /// With RFC 6298's gains: 1/8 for the mean, 1/4 for the deviation.
    fn update(self, sample: u64) -> Self {
        Self {
            smoothed: (7 * self.smoothed + sample) / 8,
            deviation: (3 * self.deviation + self.smoothed.abs_diff(sample)) / 4,
        }
    }

    /// How long an answer may take before a frame counts as lost.
    fn timeout(self) -> u64 {
        self.smoothed
            .saturating_add(self.deviation.saturating_mul(4))
    }
}

/// Why a frame is put on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reason {
    First,
    Timeout,
    Fast,
}

/// The primary's end: keeps up to `WINDOW` (at most [`SACK_BITS`]) frames until the receiver
/// delivered them. Give the receiver a window at least as large.
pub struct DatagramSender<T: Datagram, const WINDOW: usize> {
    transport: T,
    config: DatagramConfig,
    /// Frames the receiver delivered: every frame below is done with.
    base: u64,
    /// The next frame's sequence number: frames `base..next` are in `slots`.
    next: u64,
    /// First transmissions leave in order: every frame below has been sent at least once.
    sent_upto: u64,
    slots: [Slot; WINDOW],
    acked_records: u64,
    /// The round trip (ns), once an ack measured one: a frame is resent early at most once per
    /// round trip, and no timeout is shorter than the round trip may take.
    rtt: Option<RoundTrip>,
    /// Rounds of sending in which a timeout ran out since the last round trip was measured: each
    /// doubles the timeout of frames sent once until one is (RFC 6298, 5.5 and 5.7). A round trip grown past the timeout is
    /// learned this way: frames resent are never measured (Karn), so without it no frame would
    /// ever be measured again.
    rtt_backoff: u32,
    /// Pacing: datagrams that may leave now, and when the bucket last earned one.
    tokens: u64,
    earned_at: u64,
    now: u64,
    activity: u64,
    stats: LinkStats,
    scratch: [u8; MAX_DATAGRAM],
}

impl<T: Datagram, const WINDOW: usize> DatagramSender<T, WINDOW> {
    /// A sender over `transport`.
    pub fn new(transport: T, config: DatagramConfig) -> Self {
        const { assert!(WINDOW >= 1 && WINDOW <= SACK_BITS) };
        Self {
            transport,
            config,
            base: 0,
            next: 0,
            sent_upto: 0,
            slots: [const { Slot::EMPTY }; WINDOW],
            acked_records: 0,
            rtt: None,
            rtt_backoff: 0,
            tokens: u64::from(config.pace_burst.max(1)),
            earned_at: 0,
            now: 0,
            activity: 0,
            stats: LinkStats::default(),
            scratch: [0; MAX_DATAGRAM],
        }
    }

    fn slot(&mut self, seq: u64) -> &mut Slot {
        &mut self.slots[slot_of(seq, WINDOW)]
    }

    /// How long frame `slot` may go unanswered before it is sent again: the configured timeout,
    /// or longer if round trips take longer, doubled for each retransmission, and never beyond
    /// the longest backoff, so that a healed partition is still noticed in time.
    fn timeout(&self, slot: &Slot) -> u64 {
        let longest = self
            .config
            .retransmit_after
            .saturating_mul(1 << self.config.max_backoff.min(32));
        let base = self
            .rtt
            .map_or(0, RoundTrip::timeout)
            .max(self.config.retransmit_after);
        // A frame sent once waits as long as the unmeasured round trip may take; one already
        // resent cannot be measured anyway, and its own backoff, which an answer ends, paces it.
        let backoff = if slot.resent {
            slot.backoff
        } else {
            self.rtt_backoff
        };
        let doublings = backoff.min(self.config.max_backoff).min(32);
        base.saturating_mul(1 << doublings).min(longest)
    }

    /// Why frame `seq` should leave now, if it should; `silent` as [`Self::silent`] was before
    /// this round of sending.
    fn due(&self, seq: u64, silent: bool) -> Option<Reason> {
        if seq >= self.sent_upto {
            return Some(Reason::First);
        }
        let slot = &self.slots[slot_of(seq, WINDOW)];
        let since = self.now.saturating_sub(slot.sent_at);
        if slot.held {
            None
        } else if slot.missing >= FAST_RETRANSMIT_REPORTS
            && since >= self.rtt.map_or(0, |rtt| rtt.smoothed)
        {
            Some(Reason::Fast)
        } else if since >= self.timeout(slot) && (seq == self.base || !silent) {
            Some(Reason::Timeout)
        } else {
            None
        }
    }

    /// The oldest frame was resent and nothing got through since (a partition, a dead or stalled
    /// backup): it alone is resent then, as a probe, until the receiver shows the path works.
    fn silent(&self) -> bool {
        self.base < self.next && self.slots[slot_of(self.base, WINDOW)].backoff > 0
    }

    /// Take a pacing token if one is left, after crediting those earned since the last.
    fn take_token(&mut self) -> bool {
        let gap = self.config.pace_gap;
        if gap == 0 {
            return true;
        }
        let burst = u64::from(self.config.pace_burst.max(1));
        let earned = self.now.saturating_sub(self.earned_at) / gap;
        self.tokens = self.tokens.saturating_add(earned).min(burst);
        self.earned_at = if self.tokens == burst {
            // A full bucket banks no time.
            self.now
        } else {
            self.earned_at + earned * gap
        };
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }

    /// Put the frames that are due on the wire while the pacing allows, lowest sequence number
    /// first: the receiver delivers in order, so the oldest missing frame holds up all others.
    fn pump(&mut self) {
        let silent = self.silent();
        let mut timed_out = false;
        for seq in self.base..self.next {
            let Some(why) = self.due(seq, silent) else {
                continue;
            };
            if !self.take_token() {
                break;
            }
            timed_out |= why == Reason::Timeout;
            self.transmit(seq, why);
        }
        // Once per round, as a single retransmission timer would: frames that time out together
        // were lost (or delayed) together.
        if timed_out {
            self.rtt_backoff = (self.rtt_backoff + 1).min(self.config.max_backoff);
        }
    }

    fn transmit(&mut self, seq: u64, why: Reason) {
        let slot = &self.slots[slot_of(seq, WINDOW)];
        let n = write(
            &mut self.scratch,
            TAG_DATA,
            self.config.epoch,
            seq,
            &slot.frame,
        );
        self.transport.send(&self.scratch[..n]);
        self.stats.wire_bytes += n as u64;
        match why {
            Reason::First => self.sent_upto += 1,
            Reason::Timeout => self.stats.retransmits += 1,
            Reason::Fast => {
                self.stats.retransmits += 1;
                self.stats.fast_retransmits += 1;
            }
        }
        let now = self.now;
        let slot = self.slot(seq);
        if why != Reason::First {
            slot.resent = true;
            slot.backoff = slot.backoff.saturating_add(1);
        }
        slot.sent_at = now;
        slot.missing = 0;
    }

    /// Take in one ack of this link's epoch; `false` if it cannot be true (it acknowledges or
    /// reports held frames never sent).
    fn on_ack(&mut self, ack: Ack) -> bool {
        if ack.delivered > self.sent_upto {
            return false;
        }
        let highest_held =
            (ack.sack != 0).then(|| ack.delivered + u64::from(63 - ack.sack.leading_zeros()));
        if highest_held.is_some_and(|h| h >= self.sent_upto) {
            return false;
        }
        self.activity += 1;
        // Acks may arrive out of order: the counts never move back.
        self.acked_records = self.acked_records.max(ack.records);
        let mut news = ack.delivered > self.base;
        if news {
            self.advance(ack.delivered);
        }
        for i in (0..SACK_BITS as u64).filter(|i| ack.sack & (1 << i) != 0) {
            let seq = ack.delivered + i;
            if seq >= self.base {
                let slot = self.slot(seq);
                news |= !slot.held;
                slot.held = true;
            }
        }
        self.end_backoff(news);
        // Only the latest news counts a frame missing: an older ack may predate its last sending.
        if let Some(highest) = highest_held.filter(|_| ack.delivered == self.base) {
            for seq in self.base..highest {
                let slot = self.slot(seq);
                if !slot.held {
                    slot.missing = slot.missing.saturating_add(1);
                }
            }
        }
        true
    }

    /// The receiver answered. If frames got through (`news`), the path works again: the frames
    /// backed off during a silence go back to the plain timeout, and those sent before it are
    /// resent now rather than up to `retransmit_after << max_backoff` later. Otherwise only the
    /// oldest one does, as a probe: an ack with no news may come from a receiver that still
    /// cannot hear this end.
    fn end_backoff(&mut self, news: bool) {
        if news {
            for slot in &mut self.slots {
                slot.backoff = 0;
            }
        } else if self.base < self.next {
            self.slot(self.base).backoff = 0;
        }
    }

    /// The receiver delivered every frame below `delivered`: drop them from the window.
    fn advance(&mut self, delivered: u64) {
        let newest = &self.slots[slot_of(delivered - 1, WINDOW)];
        // A round trip is measured only on a frame sent once and not held waiting for an earlier
        // one: the ack then answers that very sending.
        if !newest.resent && !newest.held {
            let sample = self.now.saturating_sub(newest.sent_at);
            self.rtt = Some(
                self.rtt
                    .map_or(RoundTrip::first(sample), |rtt| rtt.update(sample)),
            );
            self.rtt_backoff = 0;
        }
        for seq in self.base..delivered {
            *self.slot(seq) = Slot::EMPTY;
        }
        self.base = delivered;
    }
}

impl<T: Datagram, const WINDOW: usize> LogSender for DatagramSender<T, WINDOW> {
    fn send(&mut self, frame: &[u8]) -> Result<(), LinkError> {
        let copy = FrameBuf::from_slice(frame).map_err(|_| LinkError::FrameTooLarge {
            len: frame.len(),
            max: MAX_FRAME,
        })?;
        if self.next - self.base >= WINDOW as u64 {
            return Err(LinkError::Full);
        }
        let seq = self.next;
        *self.slot(seq) = Slot {
            frame: copy,
            ..Slot::EMPTY
        };
        self.next += 1;
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += frame.len() as u64;
        // Out at once unless the pacing holds it; `poll` sends it then.
        self.pump();
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
        // One byte more than an ack: a longer datagram shows as one.
        let mut buf = [0u8; ACK_LEN + 1];
        for _ in 0..DRAIN_LIMIT {
            let Some(n) = self.transport.recv(&mut buf) else {
                break;
            };
            match buf.get(..n).and_then(parse) {
                Some((epoch, _)) if epoch != self.config.epoch => {
                    self.stats.dropped_stale_epoch += 1;
                }
                Some((_, Wire::Ack(ack))) if self.on_ack(ack) => {}
                _ => self.stats.dropped_corrupt += 1,
            }
        }
        self.pump();
    }

    fn stats(&self) -> LinkStats {
        self.stats
    }
}

/// The backup's end: holds up to `WINDOW` (at most [`SACK_BITS`]) frames beyond the last one
/// delivered, delivers them in order, each once, and acknowledges with the frames it holds.
pub struct DatagramReceiver<T: Datagram, const WINDOW: usize> {
    transport: T,
    epoch: u32,
    /// Frames handed to the engine; frame `delivered + i` waits in `held`, if it arrived.
    delivered: u64,
    held: [Option<FrameBuf>; WINDOW],
    /// Records the backup last said it holds: every ack repeats it.
    records: u64,
    activity: u64,
    stats: LinkStats,
    /// One byte more than the largest datagram: a longer one shows as one.
    scratch: [u8; MAX_DATAGRAM + 1],
}

impl<T: Datagram, const WINDOW: usize> DatagramReceiver<T, WINDOW> {
    /// A receiver over `transport`; of `config` it uses the epoch.
    pub fn new(transport: T, config: DatagramConfig) -> Self {
        const { assert!(WINDOW >= 1 && WINDOW <= SACK_BITS) };
        Self {
            transport,
            epoch: config.epoch,
            delivered: 0,
            held: [const { None }; WINDOW],
            records: 0,
            activity: 0,
            stats: LinkStats::default(),
            scratch: [0; MAX_DATAGRAM + 1],
        }
    }

    /// Take what the transport holds; the sender hears at once of a gap or a repeat.
    fn drain(&mut self) {
        let mut tell_sender = false;
        for _ in 0..DRAIN_LIMIT {
            let Some(n) = self.transport.recv(&mut self.scratch) else {
                break;
            };
            tell_sender |= self.accept(n);
        }
        if tell_sender {
            self.send_ack();
        }
    }

    /// Keep the datagram in `scratch[..n]` if it is a frame of this link that is wanted; returns
    /// whether the sender should be told now: a frame arrived ahead of a missing one (fast
    /// retransmit counts on that) or again (the sender may have missed the ack).
    fn accept(&mut self, n: usize) -> bool {
        let Some((epoch, wire)) = self.scratch.get(..n).and_then(parse) else {
            self.stats.dropped_corrupt += 1;
            return false;
        };
        if epoch != self.epoch {
            self.stats.dropped_stale_epoch += 1;
            return false;
        }
        let Wire::Data { seq, frame } = wire else {
            self.stats.dropped_corrupt += 1;
            return false;
        };
        self.activity += 1;
        let Some(ahead) = seq.checked_sub(self.delivered) else {
            self.stats.dropped_duplicate += 1;
            return true;
        };
        if ahead >= WINDOW as u64 {
            self.stats.dropped_out_of_order += 1;
            return true;
        }
        let slot = &mut self.held[slot_of(seq, WINDOW)];
        if slot.is_some() {
            self.stats.dropped_duplicate += 1;
            return true;
        }
        // Cannot fail: `parse` bounds a datagram, and so its frame, by `MAX_DATAGRAM`.
        let Ok(frame) = FrameBuf::from_slice(frame) else {
            self.stats.dropped_corrupt += 1;
            return false;
        };
        *slot = Some(frame);
        ahead > 0
    }

    fn send_ack(&mut self) {
        let sack = (0..WINDOW as u64)
            .filter(|&i| self.held[slot_of(self.delivered + i, WINDOW)].is_some())
            .fold(0u64, |sack, i| sack | 1 << i);
        let mut payload = [0u8; 16];
        payload[..8].copy_from_slice(&sack.to_le_bytes());
        payload[8..].copy_from_slice(&self.records.to_le_bytes());
        let mut out = [0u8; MAX_DATAGRAM];
        let n = write(&mut out, TAG_ACK, self.epoch, self.delivered, &payload);
        self.transport.send(&out[..n]);
        self.stats.acks_sent += 1;
        self.stats.wire_bytes += n as u64;
    }
}

impl<T: Datagram, const WINDOW: usize> LogReceiver for DatagramReceiver<T, WINDOW> {
    fn recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>, LinkError> {
        self.drain();
        let slot = &mut self.held[slot_of(self.delivered, WINDOW)];
        let Some(frame) = slot else {
            return Ok(None);
        };
        let len = frame.len();
        let Some(out) = buf.get_mut(..len) else {
            return Err(LinkError::BufferTooSmall {
                need: len,
                have: buf.len(),
            });
        };
        out.copy_from_slice(frame);
        *slot = None;
        self.delivered += 1;
        self.stats.frames_delivered += 1;
        Ok(Some(len))
    }

    fn ack(&mut self, received: u64) {
        self.records = received;
        self.send_ack();
    }

    fn peer_activity(&self) -> u64 {
        self.activity
    }

    /// Nothing to do: the receiver takes datagrams only when the engine reads, so that a backup
    /// that stopped replaying neither takes nor acknowledges anything, and the primary's
    /// detector hears its silence.
    fn poll(&mut self, _now: u64) {}

    fn stats(&self) -> LinkStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::boxed::Box;
    use std::cell::{Cell, RefCell};
    use std::collections::{BTreeSet, VecDeque};
    use std::rc::Rc;
    use std::vec::Vec;

    /// Decides whether the wire loses a datagram, given its send order (from 0) and its bytes.
    type Lose = Box<dyn Fn(usize, &[u8]) -> bool>;

    /// One direction of a wire: what is in flight and every datagram ever sent.
    struct Wire {
        queue: VecDeque<Vec<u8>>,
        log: Vec<Vec<u8>>,
        lose: Lose,
        duplicate: bool,
    }

    impl Wire {
        fn new(
            lose: impl Fn(usize, &[u8]) -> bool + 'static,
            duplicate: bool,
        ) -> Rc<RefCell<Self>> {
            Rc::new(RefCell::new(Wire {
                queue: VecDeque::new(),
                log: Vec::new(),
                lose: Box::new(lose),
                duplicate,
            }))
        }

        /// The sequence numbers (acks: delivered counts) of every datagram sent so far.
        fn seqs(&self) -> Vec<u64> {
            self.log.iter().filter_map(|d| u64_at(d, 5)).collect()
        }
    }

    fn clean() -> Rc<RefCell<Wire>> {
        Wire::new(|_, _| false, false)
    }

    /// A wire that loses everything while `cut` is set.
    fn cuttable(cut: &Rc<Cell<bool>>) -> Rc<RefCell<Wire>> {
        let cut = cut.clone();
        Wire::new(move |_, _| cut.get(), false)
    }

    #[derive(Clone)]
    struct Port {
        out: Rc<RefCell<Wire>>,
        inp: Rc<RefCell<Wire>>,
    }

    impl Datagram for Port {
        fn send(&mut self, bytes: &[u8]) {
            let mut w = self.out.borrow_mut();
            let n = w.log.len();
            w.log.push(bytes.to_vec());
            if (w.lose)(n, bytes) {
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

    /// The sender's and the receiver's ports over a forward (data) and a backward (ack) wire.
    fn pair(forward: &Rc<RefCell<Wire>>, backward: &Rc<RefCell<Wire>>) -> (Port, Port) {
        let port = |out: &Rc<RefCell<Wire>>, inp: &Rc<RefCell<Wire>>| Port {
            out: out.clone(),
            inp: inp.clone(),
        };
        (port(forward, backward), port(backward, forward))
    }

    /// No pacing (the tests that are not about it see every datagram leave when it is due).
    fn config(retransmit_after: u64) -> DatagramConfig {
        DatagramConfig {
            pace_gap: 0,
            ..DatagramConfig::new(1, retransmit_after)
        }
    }

    fn data(epoch: u32, seq: u64, frame: &[u8]) -> Vec<u8> {
        let mut out = [0u8; MAX_DATAGRAM];
        let n = write(&mut out, TAG_DATA, epoch, seq, frame);
        out[..n].to_vec()
    }

    fn ack(epoch: u32, delivered: u64, sack: u64, records: u64) -> Vec<u8> {
        let mut payload = [0u8; 16];
        payload[..8].copy_from_slice(&sack.to_le_bytes());
        payload[8..].copy_from_slice(&records.to_le_bytes());
        let mut out = [0u8; MAX_DATAGRAM];
        let n = write(&mut out, TAG_ACK, epoch, delivered, &payload);
        out[..n].to_vec()
    }

    /// Every frame the receiver has for the engine now.
    fn take_all<T: Datagram, const W: usize>(rx: &mut DatagramReceiver<T, W>) -> Vec<Vec<u8>> {
        let mut buf = [0u8; MAX_FRAME];
        let mut got = Vec::new();
        while let Some(n) = rx.recv(&mut buf).unwrap() {
            got.push(buf[..n].to_vec());
        }
        got
    }

    #[test]
    fn lossy_duplicating_wire_delivers_every_frame_once_in_order() {
        let forward = Wire::new(|n, _| n % 3 == 2, true);
        let backward = Wire::new(|n, _| n % 3 == 2, false);
        let (a, b) = pair(&forward, &backward);
        let mut tx = DatagramSender::<_, 4>::new(a, config(10));
        let mut rx = DatagramReceiver::<_, 4>::new(b, config(10));
        let mut got = Vec::new();
        let mut next = 0u8;
        for now in 0..2_000u64 {
            while next < 50 && tx.send(&[next; 5]).is_ok() {
                next += 1;
            }
            got.extend(take_all(&mut rx));
            rx.ack(got.len() as u64);
            tx.poll(now);
        }
        let want: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; 5]).collect();
        assert_eq!(got, want);
        assert_eq!(tx.acked(), 50);
        assert!(tx.stats().retransmits > 0);
        assert!(rx.stats().dropped_duplicate > 0);
        assert_eq!(rx.stats().frames_delivered, 50);
    }

    #[test]
    fn only_the_missing_frame_is_resent_and_the_later_ones_wait_for_it() {
        let forward = Wire::new(|n, _| n == 1, false);
        let (a, b) = pair(&forward, &clean());
        let mut tx = DatagramSender::<_, 8>::new(a, config(100));
        let mut rx = DatagramReceiver::<_, 8>::new(b, config(100));
        for i in 0..5u8 {
            tx.send(&[i]).unwrap();
        }
        assert_eq!(take_all(&mut rx), [[0]], "frame 1 is missing");
        rx.ack(1);
        tx.poll(1);
        tx.poll(100);
        assert_eq!(
            forward.borrow().seqs(),
            [0, 1, 2, 3, 4, 1],
            "2 to 4 are held"
        );
        assert_eq!(take_all(&mut rx), [[1], [2], [3], [4]]);
        assert_eq!(tx.stats().retransmits, 1);
        assert_eq!(rx.stats().dropped_duplicate, 0);
    }

    #[test]
    fn a_hole_three_acks_report_is_resent_early_at_most_once_a_round_trip() {
        // Frame 1 never gets through.
        let forward = Wire::new(|_, d| u64_at(d, 5) == Some(1), false);
        let (a, b) = pair(&forward, &clean());
        let mut tx = DatagramSender::<_, 8>::new(a, config(1_000_000));
        let mut rx = DatagramReceiver::<_, 8>::new(b, config(1_000_000));
        tx.send(&[0]).unwrap();
        assert_eq!(take_all(&mut rx).len(), 1);
        rx.ack(1);
        // The ack answers the frame sent at 0: a round trip of 20.
        tx.poll(20);
        for i in 1..6u8 {
            tx.send(&[i]).unwrap();
        }
        // Acks report the hole every tick; the first resend waits a round trip from the first
        // sending (at 20), each next one a round trip from the last: at 40, 60, 80, 100, 120.
        for now in 21..=120 {
            take_all(&mut rx);
            rx.ack(1);
            tx.poll(now);
        }
        let resends = forward.borrow().seqs().iter().filter(|&&s| s == 1).count() - 1;
        assert_eq!(resends, 5);
        assert_eq!(tx.stats().fast_retransmits, 5);
        assert_eq!(tx.stats().retransmits, 5, "no timeout ran out");
    }

    #[test]
    fn a_round_trip_longer_than_the_timeout_is_learned_and_resends_stop() {
        // The configured timeout is 10, but acks take 30 to come back (a queue on the path).
        let (forward, acks, late) = (clean(), clean(), clean());
        let mut tx = DatagramSender::<_, 8>::new(
            Port {
                out: forward.clone(),
                inp: late.clone(),
            },
            config(10),
        );
        let mut rx = DatagramReceiver::<_, 8>::new(
            Port {
                out: acks.clone(),
                inp: forward.clone(),
            },
            config(10),
        );
        let mut in_flight: VecDeque<(u64, Vec<u8>)> = VecDeque::new();
        let (mut delivered, mut resent_by_half) = (0, 0);
        for now in 0..2_000u64 {
            if now % 20 == 0 {
                tx.send(&[(now / 20) as u8]).unwrap();
            }
            delivered += take_all(&mut rx).len() as u64;
            rx.ack(delivered);
            let sent: Vec<Vec<u8>> = acks.borrow_mut().queue.drain(..).collect();
            in_flight.extend(sent.into_iter().map(|d| (now, d)));
            while in_flight.front().is_some_and(|&(at, _)| now - at >= 30) {
                let (_, d) = in_flight.pop_front().unwrap();
                late.borrow_mut().queue.push_back(d);
            }
            tx.poll(now);
            if now == 1_000 {
                resent_by_half = tx.stats().retransmits;
            }
        }
        assert_eq!(delivered, 100);
        assert!(resent_by_half > 0, "the first frames time out");
        assert_eq!(
            tx.stats().retransmits,
            resent_by_half,
            "once the round trip is known, nothing is resent"
        );
    }

    #[test]
    fn pacing_lets_a_burst_leave_then_one_datagram_a_gap() {
        let forward = clean();
        let (a, _b) = pair(&forward, &clean());
        let paced = DatagramConfig {
            pace_gap: 1_000,
            pace_burst: 2,
            ..DatagramConfig::new(1, 1_000_000)
        };
        let mut tx = DatagramSender::<_, 8>::new(a, paced);
        for i in 0..8u8 {
            tx.send(&[i]).unwrap();
        }
        let sent = |tx: &mut DatagramSender<Port, 8>, now| {
            tx.poll(now);
            forward.borrow().log.len()
        };
        assert_eq!(forward.borrow().log.len(), 2, "the burst");
        assert_eq!(sent(&mut tx, 999), 2);
        assert_eq!(sent(&mut tx, 1_000), 3);
        // A quiet spell earns no more than a burst.
        assert_eq!(sent(&mut tx, 5_000), 5);
        assert_eq!(sent(&mut tx, 6_000), 6);
        assert_eq!(forward.borrow().seqs(), [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_silent_receiver_gets_one_backed_off_probe_and_its_answer_brings_the_rest() {
        let cut = Rc::new(Cell::new(true));
        let forward = cuttable(&cut);
        let (a, b) = pair(&forward, &cuttable(&cut));
        let config = DatagramConfig {
            max_backoff: 3,
            ..config(100)
        };
        let mut tx = DatagramSender::<_, 4>::new(a, config);
        let mut rx = DatagramReceiver::<_, 4>::new(b, config);
        for i in 0..4u8 {
            tx.send(&[i]).unwrap();
        }
        let mut got = Vec::new();
        for now in 1..=3_002 {
            cut.set(now < 3_000);
            got.extend(take_all(&mut rx));
            rx.ack(got.len() as u64);
            tx.poll(now);
        }
        // All four time out at 100; then frame 0 alone is resent while nothing answers, at 300,
        // 700, 1500 and 2300 (the timeout doubles up to 8 times); the first ack after the cut
        // brings a probe at once, and its answer the other frames.
        assert_eq!(
            forward.borrow().seqs(),
            [0, 1, 2, 3, 0, 1, 2, 3, 0, 0, 0, 0, 0, 1, 2, 3]
        );
        assert_eq!(got, [[0], [1], [2], [3]]);
    }

    #[test]
    fn datagrams_of_another_epoch_are_never_delivered_and_acknowledge_nothing() {
        let (a, b) = pair(&clean(), &clean());
        let (mut to_rx, mut to_tx) = (a.clone(), b.clone());
        let mut rx = DatagramReceiver::<_, 4>::new(b, config(10));
        to_rx.send(&data(2, 0, b"later"));
        to_rx.send(&data(0, 0, b"earlier"));
        to_rx.send(&data(1, 0, b"ours"));
        assert_eq!(take_all(&mut rx), [b"ours"]);
        assert_eq!(rx.stats().dropped_stale_epoch, 2);
        assert_eq!(rx.peer_activity(), 1);

        let mut tx = DatagramSender::<_, 4>::new(
            a,
            DatagramConfig {
                epoch: 2,
                ..config(10)
            },
        );
        tx.send(&[1]).unwrap();
        to_tx.send(&ack(1, 1, 0, 9));
        tx.poll(1);
        assert_eq!((tx.acked(), tx.peer_activity()), (0, 0));
        assert_eq!(tx.stats().dropped_stale_epoch, 1);
        to_tx.send(&ack(2, 1, 0, 9));
        tx.poll(2);
        assert_eq!(tx.acked(), 9);
    }

    #[test]
    fn corrupted_or_bogus_acks_acknowledge_nothing() {
        let (a, b) = pair(&clean(), &clean());
        let mut raw = b.clone();
        let mut tx = DatagramSender::<_, 4>::new(a, config(10));
        tx.send(&[1]).unwrap();
        let good = ack(1, 1, 0, 3);
        let mut flipped = good.clone();
        flipped[3] ^= 0x40;
        let mut longer = [0u8; MAX_DATAGRAM];
        let n = write(&mut longer, TAG_ACK, 1, 1, &[0; 17]);
        let mut go_back_n = [0u8; MAX_DATAGRAM];
        let m = write(&mut go_back_n, 2, 1, 1, &[3, 0, 0, 0, 0, 0, 0, 0]);
        for bogus in [
            &flipped[..],
            &good[..good.len() - 1],
            &longer[..n],
            &go_back_n[..m],
            &data(1, 0, &[1]),
            // Frames never sent: delivered, or held.
            &ack(1, 2, 0, 3),
            &ack(1, 0, 1 << 1, 3),
            &[],
        ] {
            raw.send(bogus);
        }
        tx.poll(1);
        assert_eq!((tx.acked(), tx.peer_activity()), (0, 0));
        assert_eq!(tx.stats().dropped_corrupt, 8);
        raw.send(&good);
        tx.poll(2);
        assert_eq!(tx.acked(), 3);
    }

    #[test]
    fn malformed_or_unwanted_data_is_counted_and_never_delivered() {
        let (a, b) = pair(&clean(), &clean());
        let mut raw = a.clone();
        let mut rx = DatagramReceiver::<_, 4>::new(b, config(10));
        let mut too_long = data(1, 0, &[7; MAX_FRAME]);
        too_long.extend([0; 8]);
        for corrupt in [&[][..], &[TAG_DATA, 1, 0], &too_long, &ack(1, 0, 0, 0)] {
            raw.send(corrupt);
        }
        // Beyond the window: frames 4 and later while none is delivered.
        raw.send(&data(1, 4, b"ahead"));
        raw.send(&data(1, u64::MAX, b"far ahead"));
        assert!(take_all(&mut rx).is_empty());
        let stats = rx.stats();
        assert_eq!((stats.dropped_corrupt, stats.dropped_out_of_order), (4, 2));
        raw.send(&data(1, 0, b"first"));
        raw.send(&data(1, 0, b"first"));
        assert_eq!(take_all(&mut rx), [b"first"]);
        assert_eq!(rx.stats().dropped_duplicate, 1);
    }

    #[test]
    fn acks_count_records_and_move_the_window_by_frames() {
        let (a, b) = pair(&clean(), &clean());
        let mut tx = DatagramSender::<_, 2>::new(a, config(10));
        let mut rx = DatagramReceiver::<_, 2>::new(b, config(10));
        tx.send(&[1]).unwrap();
        tx.send(&[2]).unwrap();
        assert_eq!(tx.send(&[3]), Err(LinkError::Full));
        assert_eq!(take_all(&mut rx).len(), 2);
        // Two frames holding five records between them.
        rx.ack(5);
        tx.poll(1);
        assert_eq!(tx.acked(), 5);
        tx.send(&[3]).unwrap();
        tx.send(&[4]).unwrap();
        assert_eq!(tx.send(&[5]), Err(LinkError::Full), "two frames in flight");
        assert_eq!(
            tx.send(&[0; MAX_FRAME + 1]),
            Err(LinkError::FrameTooLarge {
                len: MAX_FRAME + 1,
                max: MAX_FRAME
            })
        );
    }

    #[test]
    fn a_frame_longer_than_the_callers_buffer_waits_for_a_larger_one() {
        let (a, b) = pair(&clean(), &clean());
        let mut tx = DatagramSender::<_, 2>::new(a, config(10));
        let mut rx = DatagramReceiver::<_, 2>::new(b, config(10));
        tx.send(&[9; 8]).unwrap();
        assert_eq!(
            rx.recv(&mut [0; 4]),
            Err(LinkError::BufferTooSmall { need: 8, have: 4 })
        );
        assert_eq!(take_all(&mut rx), [[9; 8]]);
    }

    proptest! {
        #[test]
        fn hostile_bytes_are_counted_and_never_trusted(
            datagrams in proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), 0..MAX_DATAGRAM + 8),
                0..16,
            ),
        ) {
            // Two links: one for the receiver to hear from, one for the sender.
            let (mut to_rx, b) = pair(&clean(), &clean());
            let (a, mut to_tx) = pair(&clean(), &clean());
            let mut rx = DatagramReceiver::<_, 4>::new(b, config(10));
            let mut tx = DatagramSender::<_, 4>::new(a, config(10));
            tx.send(&[1]).unwrap();
            for d in &datagrams {
                to_rx.send(d);
                to_tx.send(d);
            }
            prop_assert!(take_all(&mut rx).is_empty());
            tx.poll(1);
            prop_assert_eq!(tx.acked(), 0);
            let n = datagrams.len() as u64;
            prop_assert_eq!(rx.stats().dropped_corrupt, n);
            prop_assert_eq!(tx.stats().dropped_corrupt, n);
        }

        #[test]
        fn up_to_five_flipped_bits_are_always_caught(
            frame in proptest::collection::vec(any::<u8>(), 0..=MAX_FRAME),
            picks in proptest::collection::vec(any::<prop::sample::Index>(), 1..=5),
            records in 1..u64::MAX,
        ) {
            let (mut to_rx, b) = pair(&clean(), &clean());
            let (a, mut to_tx) = pair(&clean(), &clean());
            let mut rx = DatagramReceiver::<_, 4>::new(b, config(10));
            let mut tx = DatagramSender::<_, 4>::new(a, config(10));
            tx.send(&[1]).unwrap();
            // Both would be taken as they are: frame 0, and an ack of it.
            for mut d in [data(1, 0, &frame), ack(1, 1, 0, records)] {
                let bits: BTreeSet<usize> = picks.iter().map(|i| i.index(d.len() * 8)).collect();
                for bit in bits {
                    d[bit / 8] ^= 1 << (bit % 8);
                }
                to_rx.send(&d);
                to_tx.send(&d);
            }
            prop_assert!(take_all(&mut rx).is_empty());
            tx.poll(1);
            prop_assert_eq!(tx.acked(), 0);
            prop_assert_eq!(rx.stats().dropped_corrupt, 2);
            prop_assert_eq!(tx.stats().dropped_corrupt, 2);
        }
    }
}
