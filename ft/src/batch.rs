//! The primary's open frame: records are encoded into it as they are logged and leave together
//! when the primary flushes. It also decides how much of each point the log keeps: the PC and
//! register hash in full on every [`FULL_EVERY`]th checked record and on every heartbeat, a check
//! tag on the other checked records, the position alone on the rest of the bookkeeping.

use crate::check::LoggedPoint;
use crate::codec::{Deltas, RecordError, checked_class};
use crate::frame::{self, MAX_BODY, MAX_FRAME, MAX_HEADER, MAX_RECORDS};
use crate::record::Event;
use tandem_core::point::ExecPoint;

/// One checked record in this many carries its point in full, so a divergence that every tag
/// since happened to miss (each misses 1 in 256) is caught there at the latest.
pub const FULL_EVERY: u64 = 64;

/// Why a record did not join the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchError {
    /// The frame has no room left for it, or holds [`MAX_RECORDS`] already: send the frame,
    /// then log the record into the next.
    Full,
    /// The record cannot be encoded.
    Record(RecordError),
}

/// Records logged and not yet sent, encoded as the body of the next frame.
pub struct Batch {
    /// The protection epoch its frames carry.
    epoch: u32,
    frame: [u8; MAX_FRAME],
    /// Body bytes so far, from `frame[MAX_HEADER]` on.
    body: usize,
    /// Log index of the frame's first record: every record before it has been sent.
    first: u64,
    records: u64,
    deltas: Deltas,
    /// Checked records logged so far, for the full-point cadence.
    checked: u64,
}

impl Default for Batch {
    fn default() -> Self {
        Self {
            epoch: 0,
            frame: [0; MAX_FRAME],
            body: 0,
            first: 0,
            records: 0,
            deltas: Deltas::default(),
            checked: 0,
        }
    }
}

impl Batch {
    /// An empty batch whose frames carry protection epoch `epoch`.
    pub fn for_epoch(epoch: u32) -> Self {
        Self {
            epoch,
            ..Self::default()
        }
    }

    /// Whether no record waits to be sent.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Records sent so far: the index of the first record waiting.
    pub fn sent(&self) -> u64 {
        self.first
    }

    /// Encode `event` at `point` as the next record of the log. A heartbeat at a point not
    /// `known` (the start, before the exit loop reported any) carries its position only.
    pub fn push(
        &mut self,
        point: &ExecPoint,
        event: &Event,
        known: bool,
    ) -> Result<(), BatchError> {
        if self.records == MAX_RECORDS as u64 {
            return Err(BatchError::Full);
        }
        let checked = checked_class(event.class());
        let logged = if known && matches!(event, Event::Heartbeat { .. }) {
            LoggedPoint::full(point)
        } else if !checked {
            LoggedPoint::unchecked(point)
        } else if self.checked.is_multiple_of(FULL_EVERY) {
            LoggedPoint::full(point)
        } else {
            LoggedPoint::tagged(point)
        };
        let room = &mut self.frame[MAX_HEADER + self.body..MAX_HEADER + MAX_BODY];
        match self.deltas.encode(&logged, event, room) {
            Ok(n) => {
                self.body += n;
                self.records += 1;
                self.checked += u64::from(checked);
                Ok(())
            }
            // An empty frame has room for any record, so this one will fit the next.
            Err(RecordError::NoRoom) if !self.is_empty() => Err(BatchError::Full),
            Err(e) => Err(BatchError::Record(e)),
        }
    }

    /// The frame to send, if a record waits: header, records, CRC.
    pub fn seal(&mut self) -> Option<&[u8]> {
        (!self.is_empty()).then(|| frame::seal(&mut self.frame, self.epoch, self.first, self.body))
    }

    /// The sealed frame has been sent: the next record starts a new one.
    pub fn clear(&mut self) {
        self.first += self.records;
        self.records = 0;
        self.body = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Check;
    use crate::frame::FrameReader;
    use crate::record::Record;
    use std::vec::Vec;

    fn at(det_exits: u64) -> ExecPoint {
        ExecPoint {
            det_exits,
            pc: 0xffff_ffff_8100_0000 + det_exits,
            reg_hash: det_exits.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            precise: None,
        }
    }

    /// Sends whatever `log` puts in batches, and returns the records as a backup reads them.
    fn read_back(log: impl Fn(&mut Batch, &mut Vec<Vec<u8>>)) -> Vec<Record> {
        let mut batch = Batch::default();
        let mut frames = Vec::new();
        log(&mut batch, &mut frames);
        frames.extend(batch.seal().map(<[u8]>::to_vec));
        let mut reader = FrameReader::default();
        let mut records = Vec::new();
        for frame in frames {
            let mut queue = heapless::Deque::<Record, MAX_RECORDS>::new();
            reader.accept(&frame, &mut queue).unwrap();
            records.extend(queue);
        }
        records
    }

    #[test]
    fn full_points_on_the_first_and_every_nth_checked_record_and_on_heartbeats() {
        let records = read_back(|batch, frames| {
            for n in 0..2 * FULL_EVERY + 1 {
                let event = Event::TimeRead { value: n };
                if batch.push(&at(n), &event, true) == Err(BatchError::Full) {
                    frames.extend(batch.seal().map(<[u8]>::to_vec));
                    batch.clear();
                    batch.push(&at(n), &event, true).unwrap();
                }
                // Bookkeeping in between neither carries a check nor moves the cadence.
                batch.push(&at(n), &Event::OutputDone { seq: n }, true).ok();
            }
            batch
                .push(&at(999), &Event::Heartbeat { now: 1 }, true)
                .ok();
        });
        let full: Vec<u64> = records
            .iter()
            .filter(|r| matches!(r.point.check, Check::Full { .. }))
            .map(|r| r.point.det_exits)
            .collect();
        assert_eq!(full, [0, FULL_EVERY, 2 * FULL_EVERY, 999]);
        assert!(
            records
                .iter()
                .filter(|r| matches!(r.event, Event::OutputDone { .. }))
                .all(|r| r.point.check == Check::Unchecked)
        );
        assert!(
            records
                .iter()
                .all(|r| r.point.matches(&at(r.point.det_exits)))
        );
    }

    #[test]
    fn a_frame_holds_at_most_max_records_and_clearing_starts_the_next_at_the_right_index() {
        let mut batch = Batch::default();
        for n in 0..MAX_RECORDS as u64 {
            batch
                .push(&at(n), &Event::OutputDone { seq: n }, true)
                .unwrap();
        }
        assert_eq!(
            batch.push(&at(0), &Event::OutputDone { seq: 99 }, true),
            Err(BatchError::Full)
        );
        assert!(batch.seal().is_some());
        batch.clear();
        assert!(batch.is_empty() && batch.seal().is_none());
        assert_eq!(batch.sent(), MAX_RECORDS as u64);
    }
}
