//! Wire framing: the records logged since the last flush, behind one header and one CRC.
//!
//! ```text
//! magic "TF" (2) | version (1) | epoch (varint) | first record index (varint) | body length (varint) | body | crc32c (4)
//! ```
//! The body holds one or more records ([`crate::codec`]), each encoded against the records before
//! it in the log: frames are read in log order, each once, and [`FrameReader`] keeps the decoding
//! state from one to the next. The CRC covers header and body. Varints are postcard's. The epoch
//! is the protection epoch of the pair that wrote the frame: a reader refuses (and counts) frames
//! of any other, so a zombie primary of an earlier epoch never reaches a later backup.

use crate::codec::{Deltas, MAX_RECORD, shortest};
use crate::record::Record;
use postcard::ser_flavors::{Flavor, Slice};

/// Frame magic, "TF".
pub const MAGIC: [u8; 2] = *b"TF";
/// Format version written and accepted: 2 carries batches of delta-coded records (1 carried one
/// postcard record per frame).
pub const VERSION: u8 = 2;
/// Longest header: magic, version, a 5-byte varint epoch, a 10-byte varint index and a 2-byte
/// varint body length.
pub const MAX_HEADER: usize = 20;
/// CRC trailer length in bytes.
pub const TRAILER_LEN: usize = 4;
/// Largest encoded frame: what a ring slot or a datagram carries.
pub const MAX_FRAME: usize = 512;
/// Largest body.
pub const MAX_BODY: usize = MAX_FRAME - MAX_HEADER - TRAILER_LEN;
// Any record fits an empty frame, and a body length fits the header's two varint bytes.
const _: () = assert!(MAX_BODY >= MAX_RECORD && MAX_BODY < 1 << 14);
/// Most records one frame carries: a reader takes a frame only with room for this many.
pub const MAX_RECORDS: usize = 64;
/// Shortest frame: one-byte index and length, one one-byte record.
const MIN_FRAME: usize = MAGIC.len() + 1 + 1 + 1 + 1 + TRAILER_LEN;

// Slice-by-16 tables: the CRC is on the path of every flush.
const CRC: crc::Crc<u32, crc::Table<16>> = crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

/// Why bytes are not a valid frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than the header and trailer, or than the declared body.
    Truncated { len: usize },
    /// More bytes than the declared body.
    TrailingBytes { len: usize, expected: usize },
    /// Not a Tandem frame.
    BadMagic,
    /// A version this build does not read.
    UnsupportedVersion { found: u8 },
    /// A header field that no sender writes (an overlong varint, a body longer than a frame).
    BadHeader,
    /// The CRC does not match the contents.
    BadCrc { first_field: u64 },
    /// The body is not a sequence of records following the log so far.
    BadBody { first: u64 },
}

/// Write the header before a body already at `frame[MAX_HEADER..MAX_HEADER + body_len]`, and the
/// CRC after it; returns the frame, which starts where its header does.
pub fn seal(frame: &mut [u8; MAX_FRAME], epoch: u32, first: u64, body_len: usize) -> &[u8] {
    let body_len = body_len.min(MAX_BODY);
    let mut header = [0u8; MAX_HEADER];
    let header_len = write_header(&mut header, epoch, first, body_len);
    let start = MAX_HEADER - header_len;
    frame[start..MAX_HEADER].copy_from_slice(&header[..header_len]);
    let end = MAX_HEADER + body_len;
    let crc = CRC.checksum(&frame[start..end]);
    frame[end..end + TRAILER_LEN].copy_from_slice(&crc.to_le_bytes());
    &frame[start..end + TRAILER_LEN]
}

/// The canonical header; returns its length.
fn write_header(out: &mut [u8; MAX_HEADER], epoch: u32, first: u64, body_len: usize) -> usize {
    out[..2].copy_from_slice(&MAGIC);
    out[2] = VERSION;
    let mut ser = postcard::Serializer {
        output: Slice::new(&mut out[3..]),
    };
    // Cannot fail: a u64 takes at most 10 bytes and a length below 2^14 two, as MAX_HEADER
    // counts. A failure would only give a frame every reader refuses.
    let _ = serde::Serializer::serialize_u64(&mut ser, epoch.into());
    let _ = serde::Serializer::serialize_u64(&mut ser, first);
    let _ = serde::Serializer::serialize_u64(&mut ser, body_len as u64);
    3 + ser.output.finalize().map_or(0, |v| v.len())
}

/// Check one frame's framing (length, magic, version, header, CRC); returns the index of its
/// first record and its body, not yet decoded.
pub fn open(bytes: &[u8]) -> Result<(u32, u64, &[u8]), FrameError> {
    let len = bytes.len();
    if len < MIN_FRAME {
        return Err(FrameError::Truncated { len });
    }
    if bytes[..2] != MAGIC {
        return Err(FrameError::BadMagic);
    }
    if bytes[2] != VERSION {
        return Err(FrameError::UnsupportedVersion { found: bytes[2] });
    }
    let (epoch, rest) = header_varint(&bytes[3..], len)?;
    let epoch = u32::try_from(epoch).map_err(|_| FrameError::BadHeader)?;
    let (first, rest) = header_varint(rest, len)?;
    let (body_len, rest) = header_varint(rest, len)?;
    let header_len = len - rest.len();
    let body_len = usize::try_from(body_len)
        .ok()
        .filter(|&b| b <= MAX_BODY)
        .ok_or(FrameError::BadHeader)?;
    let expected = header_len + body_len + TRAILER_LEN;
    if len < expected {
        return Err(FrameError::Truncated { len });
    }
    if len > expected {
        return Err(FrameError::TrailingBytes { len, expected });
    }
    let end = header_len + body_len;
    let mut stored = [0u8; TRAILER_LEN];
    stored.copy_from_slice(&bytes[end..]);
    if CRC.checksum(&bytes[..end]) != u32::from_le_bytes(stored) {
        return Err(FrameError::BadCrc { first_field: first });
    }
    if body_len == 0 {
        return Err(FrameError::BadBody { first });
    }
    Ok((epoch, first, &bytes[header_len..end]))
}

/// A header varint; only its shortest form is accepted, as the sender writes it.
fn header_varint(bytes: &[u8], len: usize) -> Result<(u64, &[u8]), FrameError> {
    let (value, rest) = postcard::take_from_bytes::<u64>(bytes).map_err(|e| match e {
        postcard::Error::DeserializeUnexpectedEnd => FrameError::Truncated { len },
        _ => FrameError::BadHeader,
    })?;
    shortest(bytes.len() - rest.len(), value).map_err(|_| FrameError::BadHeader)?;
    Ok((value, rest))
}

/// Why the reader refused a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// The bytes are not a valid frame.
    Invalid(FrameError),
    /// A valid frame of another protection epoch than the reader's.
    OtherEpoch { epoch: u32, expected: u32 },
    /// A valid frame whose records were already accepted.
    Replayed { first: u64, expected: u64 },
    /// A valid frame from beyond the next expected record.
    OutOfOrder { first: u64, expected: u64 },
    /// The caller's queue has room for fewer than [`MAX_RECORDS`] records (not counted: the
    /// frame was not looked at, and the caller should not have taken it yet).
    NoRoom,
}

/// Counts of refused frames, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RejectCounts {
    /// Truncated or overlong frames.
    pub truncated: u64,
    /// Bad magic, header, CRC or body.
    pub corrupt: u64,
    /// Unknown version.
    pub version: u64,
    /// Of another protection epoch (a zombie's).
    pub other_epoch: u64,
    /// Already accepted.
    pub replayed: u64,
    /// Ahead of the expected record.
    pub out_of_order: u64,
}

impl RejectCounts {
    /// All refused frames.
    pub fn total(&self) -> u64 {
        self.truncated
            + self.corrupt
            + self.version
            + self.other_epoch
            + self.replayed
            + self.out_of_order
    }
}

/// Accepts frames strictly in log order, exactly once, decodes their records against the log
/// so far, and counts everything it refuses.
#[derive(Clone, Debug, Default)]
pub struct FrameReader {
    /// The protection epoch whose frames it accepts.
    epoch: u32,
    /// The first record index the next frame must carry: records accepted so far.
    next: u64,
    /// The decoding state after the last record accepted.
    deltas: Deltas,
    rejects: RejectCounts,
}

impl FrameReader {
    /// A reader of protection epoch `epoch`'s frames.
    pub fn for_epoch(epoch: u32) -> Self {
        Self {
            epoch,
            ..Self::default()
        }
    }

    /// Records in the frames accepted so far (the index the next frame must start at).
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// Refusals so far.
    pub fn rejects(&self) -> RejectCounts {
        self.rejects
    }

    /// Validate one frame and append its records to `out`, which must have room for
    /// [`MAX_RECORDS`] more; returns how many it held. Records are decoded once, straight into
    /// `out`: a frame refused half-way is taken back out, so `out` and the decoding state only
    /// ever hold whole frames.
    pub fn accept<const N: usize>(
        &mut self,
        bytes: &[u8],
        out: &mut heapless::Deque<Record, N>,
    ) -> Result<u64, Rejected> {
        let before = out.len();
        if N - before < MAX_RECORDS {
            return Err(Rejected::NoRoom);
        }
        let (epoch, first, body) = open(bytes).map_err(|e| self.refuse(e))?;
        if epoch != self.epoch {
            self.rejects.other_epoch += 1;
            return Err(Rejected::OtherEpoch {
                epoch,
                expected: self.epoch,
            });
        }
        let expected = self.next;
        if first < expected {
            self.rejects.replayed += 1;
            return Err(Rejected::Replayed { first, expected });
        }
        if first > expected {
            self.rejects.out_of_order += 1;
            return Err(Rejected::OutOfOrder { first, expected });
        }
        let mut deltas = self.deltas;
        let mut rest = body;
        while !rest.is_empty() {
            let taken = match deltas.decode(rest) {
                Ok((record, n)) if out.len() - before < MAX_RECORDS => {
                    rest = rest.get(n..).unwrap_or_default();
                    out.push_back(record).is_ok()
                }
                _ => false,
            };
            if !taken {
                while out.len() > before {
                    out.pop_back();
                }
                return Err(self.refuse(FrameError::BadBody { first }));
            }
        }
        let count = (out.len() - before) as u64;
        self.deltas = deltas;
        self.next += count;
        Ok(count)
    }

    fn refuse(&mut self, e: FrameError) -> Rejected {
        match e {
            FrameError::Truncated { .. } | FrameError::TrailingBytes { .. } => {
                self.rejects.truncated += 1
            }
            FrameError::UnsupportedVersion { .. } => self.rejects.version += 1,
            FrameError::BadMagic
            | FrameError::BadHeader
            | FrameError::BadCrc { .. }
            | FrameError::BadBody { .. } => self.rejects.corrupt += 1,
        }
        Rejected::Invalid(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::LoggedPoint;
    use crate::record::{Control, Event, InputData};
    use std::vec::Vec;
    use tandem_core::point::ExecPoint;

    fn point(det_exits: u64) -> ExecPoint {
        ExecPoint {
            det_exits,
            pc: 0xffff_ffff_8100_2030 + det_exits,
            reg_hash: 0xdead_beef_cafe_f00d ^ det_exits,
            precise: Some(99 + det_exits),
        }
    }

    /// One record of every kind, each further along the log.
    fn samples() -> Vec<Record> {
        let data = InputData::from_slice(&[7u8; crate::record::MAX_INPUT]).unwrap();
        [
            Event::TimeRead { value: u64::MAX },
            Event::RandomRead { value: 42 },
            Event::Interrupt { vector: 32 },
            Event::Input { device: 3, data },
            Event::Output { seq: 9, digest: 1 },
            Event::OutputDone { seq: 9 },
            Event::Heartbeat { now: 5 },
            Event::Control(Control::Resync { epoch: 2 }),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, event)| {
            let at = point(1000 + 3 * i as u64);
            let point = match (event.class(), i % 2) {
                (crate::record::EventClass::Bookkeeping, _) => LoggedPoint::unchecked(&at),
                (_, 0) => LoggedPoint::full(&at),
                _ => LoggedPoint::tagged(&at),
            };
            Record { point, event }
        })
        .collect()
    }

    /// Frames holding `records` in turn, as a sender starting at record `first` writes them.
    fn frames(first: u64, batches: &[&[Record]]) -> Vec<Vec<u8>> {
        let mut deltas = Deltas::default();
        let mut next = first;
        batches
            .iter()
            .map(|records| {
                let mut buf = [0u8; MAX_FRAME];
                let mut len = 0;
                for r in *records {
                    len += deltas
                        .encode(
                            &r.point,
                            &r.event,
                            &mut buf[MAX_HEADER + len..MAX_HEADER + MAX_BODY],
                        )
                        .unwrap();
                }
                let frame = seal(&mut buf, 0, next, len).to_vec();
                next += records.len() as u64;
                frame
            })
            .collect()
    }

    type Queue = heapless::Deque<Record, MAX_RECORDS>;

    /// Accept `frame`; returns what it held.
    fn take(reader: &mut FrameReader, frame: &[u8]) -> Result<Vec<Record>, Rejected> {
        let mut queue = Queue::new();
        reader.accept(frame, &mut queue)?;
        Ok(queue.into_iter().collect())
    }

    #[test]
    fn every_record_kind_round_trips_across_frames() {
        let records = samples();
        // The input record alone nearly fills a frame: it travels on its own.
        let (a, rest) = records.split_at(3);
        let (b, c) = rest.split_at(1);
        let mut reader = FrameReader::default();
        let mut got = Vec::new();
        for frame in frames(0, &[a, b, c]) {
            got.extend(take(&mut reader, &frame).unwrap());
        }
        assert_eq!(got, records);
        assert_eq!(reader.next_seq(), records.len() as u64);
        assert_eq!(reader.rejects().total(), 0);
    }

    #[test]
    fn a_frame_waits_for_room_for_a_whole_frame() {
        let frame = frames(0, &[&samples()[..2]]).remove(0);
        let mut reader = FrameReader::default();
        let mut queue = heapless::Deque::<Record, { MAX_RECORDS + 1 }>::new();
        queue.push_back(samples().remove(0)).unwrap();
        queue.push_back(samples().remove(0)).unwrap();
        assert_eq!(reader.accept(&frame, &mut queue), Err(Rejected::NoRoom));
        assert_eq!((queue.len(), reader.rejects().total()), (2, 0));
        queue.pop_front();
        assert_eq!(reader.accept(&frame, &mut queue), Ok(2));
    }

    #[test]
    fn a_frame_with_more_records_than_a_reader_takes_is_refused_whole() {
        // 65 one-byte `OutputDone` records: a sender caps frames at 64.
        let done = |seq| Record {
            point: LoggedPoint::unchecked(&point(0)),
            event: Event::OutputDone { seq },
        };
        let records: Vec<Record> = (0..=MAX_RECORDS as u64).map(done).collect();
        let mut reader = FrameReader::default();
        let mut queue = heapless::Deque::<Record, { 2 * MAX_RECORDS }>::new();
        let frame = frames(0, &[&records]).remove(0);
        assert_eq!(
            reader.accept(&frame, &mut queue),
            Err(Rejected::Invalid(FrameError::BadBody { first: 0 }))
        );
        assert!(queue.is_empty(), "no record of a refused frame stays");
        let frame = frames(0, &[&records[..MAX_RECORDS]]).remove(0);
        assert_eq!(reader.accept(&frame, &mut queue), Ok(MAX_RECORDS as u64));
    }

    #[test]
    fn truncation_and_corruption_are_rejected_and_counted() {
        let records = samples();
        let frame = frames(0, &[&records[4..]]).remove(0);
        let n = frame.len();
        let mut reader = FrameReader::default();
        for cut in 0..n {
            assert!(take(&mut reader, &frame[..cut]).is_err());
        }
        assert_eq!(reader.rejects().truncated, n as u64);
        for bit in 0..n * 8 {
            let mut bad = frame.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(take(&mut reader, &bad).is_err(), "bit {bit} flip accepted");
        }
        assert_eq!(reader.rejects().total(), (n + n * 8) as u64);
        assert_eq!(reader.next_seq(), 0);
        assert_eq!(take(&mut reader, &frame), Ok(records[4..].to_vec()));
    }

    #[test]
    fn replayed_and_out_of_order_frames_are_rejected() {
        let records = samples();
        let all = frames(0, &[&records[..1], &records[1..2], &records[2..3]]);
        let mut reader = FrameReader::default();
        assert!(take(&mut reader, &all[0]).is_ok());
        assert_eq!(
            take(&mut reader, &all[0]),
            Err(Rejected::Replayed {
                first: 0,
                expected: 1
            })
        );
        assert_eq!(
            take(&mut reader, &all[2]),
            Err(Rejected::OutOfOrder {
                first: 2,
                expected: 1
            })
        );
        let counts = reader.rejects();
        assert_eq!((counts.replayed, counts.out_of_order), (1, 1));
        assert_eq!(take(&mut reader, &all[1]), Ok(records[1..2].to_vec()));
    }

    #[test]
    fn refused_frames_leave_the_decoding_state_alone() {
        // A body that decodes from the wrong state, or not at all, must not move the state the
        // next good frame is decoded against.
        let records = samples();
        let all = frames(0, &[&records[..2], &records[2..3], &records[4..]]);
        let mut reader = FrameReader::default();
        assert!(take(&mut reader, &all[0]).is_ok());
        let garbage = wrap(2, &[0xff; 40]);
        assert_eq!(
            take(&mut reader, &garbage),
            Err(Rejected::Invalid(FrameError::BadBody { first: 2 }))
        );
        assert_eq!(take(&mut reader, &all[1]), Ok(records[2..3].to_vec()));
        assert_eq!(take(&mut reader, &all[2]), Ok(records[4..].to_vec()));
    }

    #[test]
    fn frames_of_another_epoch_are_refused_and_counted() {
        let records = samples();
        let mut buf = [0u8; MAX_FRAME];
        let mut deltas = Deltas::default();
        let len = deltas
            .encode(
                &records[0].point,
                &records[0].event,
                &mut buf[MAX_HEADER..MAX_HEADER + MAX_BODY],
            )
            .unwrap();
        let zombie = seal(&mut buf, 1, 0, len).to_vec();
        let mut reader = FrameReader::for_epoch(2);
        assert_eq!(
            take(&mut reader, &zombie),
            Err(Rejected::OtherEpoch {
                epoch: 1,
                expected: 2
            })
        );
        assert_eq!((reader.rejects().other_epoch, reader.next_seq()), (1, 0));
        let current = seal(&mut buf, 2, 0, len).to_vec();
        assert_eq!(take(&mut reader, &current), Ok(records[..1].to_vec()));
    }

    #[test]
    fn wrong_version_is_refused() {
        let mut frame = frames(0, &[&samples()[..1]]).remove(0);
        frame[2] = VERSION + 1;
        assert_eq!(
            open(&frame),
            Err(FrameError::UnsupportedVersion { found: VERSION + 1 })
        );
        frame[2] = 1;
        assert_eq!(
            open(&frame),
            Err(FrameError::UnsupportedVersion { found: 1 }),
            "one-record frames of version 1 are not read"
        );
    }

    #[test]
    fn an_overlong_header_varint_is_refused_even_with_a_good_crc() {
        let frame = frames(0, &[&samples()[..1]]).remove(0);
        // Epoch 0 written as two bytes (0x80 0x00): same value, not what a sender writes.
        let mut long = frame[..3].to_vec();
        long.extend([0x80, 0x00]);
        long.extend(&frame[4..frame.len() - TRAILER_LEN]);
        let crc = CRC.checksum(&long);
        long.extend(crc.to_le_bytes());
        assert_eq!(open(&long), Err(FrameError::BadHeader));
    }

    /// A frame around `body` with a good header and CRC: what only a broken or hostile sender
    /// writes, and what the record decoder must survive.
    fn wrap(first: u64, body: &[u8]) -> Vec<u8> {
        let mut buf = [0u8; MAX_FRAME];
        let len = body.len().min(MAX_BODY);
        buf[MAX_HEADER..MAX_HEADER + len].copy_from_slice(&body[..len]);
        seal(&mut buf, 0, first, len).to_vec()
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        /// Frames a reader accepts are exactly what a sender writes for the records it got, and
        /// a refused one leaves nothing behind.
        fn check(frame: &[u8]) -> Result<(), TestCaseError> {
            let mut reader = FrameReader::default();
            let mut queue = Queue::new();
            match reader.accept(frame, &mut queue) {
                Ok(_) => {
                    let records: Vec<Record> = queue.into_iter().collect();
                    let again = frames(0, &[&records]).remove(0);
                    prop_assert_eq!(&again[..], frame);
                }
                Err(_) => {
                    prop_assert_eq!(reader.rejects().total(), 1);
                    prop_assert!(queue.is_empty());
                    prop_assert_eq!(reader.next_seq(), 0);
                }
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn arbitrary_bytes_never_panic_and_never_pass_unchecked(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
                check(&bytes)?;
            }

            #[test]
            fn arbitrary_bodies_behind_a_good_crc_never_panic_and_never_pass_unchecked(
                body in proptest::collection::vec(any::<u8>(), 1..MAX_BODY),
            ) {
                check(&wrap(0, &body))?;
            }

            #[test]
            fn mutated_bodies_behind_a_good_crc_never_panic_and_never_pass_unchecked(
                pos in any::<prop::sample::Index>(),
                flip in 1u8..=255,
                cut in any::<prop::sample::Index>(),
            ) {
                // Valid records with one byte changed, or cut short: close to what decodes.
                let records = samples();
                let frame = frames(0, &[&records[4..]]).remove(0);
                let mut body = open(&frame).unwrap().2.to_vec();
                let at = pos.index(body.len());
                body[at] ^= flip;
                check(&wrap(0, &body))?;
                body.truncate(cut.index(body.len()).max(1));
                check(&wrap(0, &body))?;
            }

            #[test]
            fn mutated_valid_frames_are_rejected(
                pos in any::<prop::sample::Index>(),
                flip in 1u8..=255,
                cut in any::<prop::sample::Index>(),
            ) {
                let frame = frames(0, &[&samples()[4..]]).remove(0);
                let n = frame.len();
                let mut flipped = frame.clone();
                flipped[pos.index(n)] ^= flip;
                prop_assert!(take(&mut FrameReader::default(), &flipped).is_err());
                prop_assert!(take(&mut FrameReader::default(), &frame[..cut.index(n)]).is_err());
            }
        }
    }
}
