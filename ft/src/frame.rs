//! Wire framing of records: a fixed little-endian header, a postcard body and a CRC.
//!
//! ```text
//! magic "TF" (2) | version (1) | epoch u32 (4) | seq u64 (8) | body length u16 (2) | postcard body | crc32c (4)
//! ```
//! The CRC covers header and body. `seq` is the record's index in the log; `epoch` the protection
//! epoch of the pair that wrote it, so a reader of a later epoch refuses a zombie primary's frames.

use crate::record::Record;

/// Frame magic, "TF".
pub const MAGIC: [u8; 2] = *b"TF";
/// Format version written and accepted.
pub const VERSION: u8 = 2;
/// Header length in bytes.
pub const HEADER_LEN: usize = 17;
/// CRC trailer length in bytes.
pub const TRAILER_LEN: usize = 4;
/// Largest postcard body: the biggest record (an input record) with room to spare.
pub const MAX_BODY: usize = crate::record::MAX_INPUT + 80;
/// Largest encoded frame.
pub const MAX_FRAME: usize = HEADER_LEN + MAX_BODY + TRAILER_LEN;

// Slice-by-16 tables: the CRC is on the path of every record.
const CRC: crc::Crc<u32, crc::Table<16>> = crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

/// Why a frame could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The output buffer is smaller than the encoded frame.
    BufferTooSmall { have: usize },
    /// The record does not fit the body limit (should be impossible for valid records).
    BodyTooLarge,
}

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
    /// The CRC does not match the contents.
    BadCrc { seq_field: u64 },
    /// The body is not a valid postcard record.
    BadBody { seq: u64 },
}

/// Encode `record` as log entry `seq` of protection epoch `epoch` into `buf`; returns the frame
/// length.
pub fn encode(epoch: u32, seq: u64, record: &Record, buf: &mut [u8]) -> Result<usize, EncodeError> {
    if buf.len() < HEADER_LEN + TRAILER_LEN {
        return Err(EncodeError::BufferTooSmall { have: buf.len() });
    }
    let body_room = (buf.len() - HEADER_LEN - TRAILER_LEN).min(MAX_BODY);
    let body_len = match postcard::to_slice(record, &mut buf[HEADER_LEN..HEADER_LEN + body_room]) {
        Ok(body) => body.len(),
        Err(_) if body_room < MAX_BODY => {
            return Err(EncodeError::BufferTooSmall { have: buf.len() });
        }
        Err(_) => return Err(EncodeError::BodyTooLarge),
    };
    buf[0..2].copy_from_slice(&MAGIC);
    buf[2] = VERSION;
    buf[3..7].copy_from_slice(&epoch.to_le_bytes());
    buf[7..15].copy_from_slice(&seq.to_le_bytes());
    // body_len <= MAX_BODY, far below u16::MAX.
    buf[15..17].copy_from_slice(&(body_len as u16).to_le_bytes());
    let end = HEADER_LEN + body_len;
    let crc = CRC.checksum(&buf[..end]);
    buf[end..end + TRAILER_LEN].copy_from_slice(&crc.to_le_bytes());
    Ok(end + TRAILER_LEN)
}

/// Decode one frame, checking length, magic, version, CRC and body; returns
/// `(epoch, seq, record)`.
pub fn decode(bytes: &[u8]) -> Result<(u32, u64, Record), FrameError> {
    let len = bytes.len();
    if len < HEADER_LEN + TRAILER_LEN {
        return Err(FrameError::Truncated { len });
    }
    if bytes[0..2] != MAGIC {
        return Err(FrameError::BadMagic);
    }
    if bytes[2] != VERSION {
        return Err(FrameError::UnsupportedVersion { found: bytes[2] });
    }
    let epoch = u32::from_le_bytes(read_array(&bytes[3..7]));
    let seq = u64::from_le_bytes(read_array(&bytes[7..15]));
    let body_len = usize::from(u16::from_le_bytes(read_array(&bytes[15..17])));
    let expected = HEADER_LEN + body_len + TRAILER_LEN;
    if len < expected {
        return Err(FrameError::Truncated { len });
    }
    if len > expected {
        return Err(FrameError::TrailingBytes { len, expected });
    }
    let end = HEADER_LEN + body_len;
    let stored = u32::from_le_bytes(read_array(&bytes[end..]));
    if CRC.checksum(&bytes[..end]) != stored {
        return Err(FrameError::BadCrc { seq_field: seq });
    }
    match postcard::take_from_bytes::<Record>(&bytes[HEADER_LEN..end]) {
        Ok((record, [])) => Ok((epoch, seq, record)),
        _ => Err(FrameError::BadBody { seq }),
    }
}

fn read_array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

/// Why the reader refused a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// The bytes are not a valid frame.
    Invalid(FrameError),
    /// A valid frame already accepted once.
    Replayed { seq: u64, expected: u64 },
    /// A valid frame from beyond the next expected index.
    OutOfOrder { seq: u64, expected: u64 },
    /// A valid frame of another protection epoch (a zombie primary's).
    OtherEpoch { epoch: u32, expected: u32 },
}

/// Counts of refused frames, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RejectCounts {
    /// Truncated or overlong frames.
    pub truncated: u64,
    /// Bad magic, CRC or body.
    pub corrupt: u64,
    /// Unknown version.
    pub version: u64,
    /// Already accepted.
    pub replayed: u64,
    /// Ahead of the expected index.
    pub out_of_order: u64,
    /// Of another protection epoch.
    pub other_epoch: u64,
}

impl RejectCounts {
    /// All refused frames.
    pub fn total(&self) -> u64 {
        self.truncated
            + self.corrupt
            + self.version
            + self.replayed
            + self.out_of_order
            + self.other_epoch
    }
}

/// Accepts frames of one protection epoch strictly in log order, exactly once, and counts
/// everything it refuses.
#[derive(Clone, Debug, Default)]
pub struct FrameReader {
    epoch: u32,
    next: u64,
    rejects: RejectCounts,
}

impl FrameReader {
    /// A reader of epoch `epoch`'s log, expecting index 0 first.
    pub fn for_epoch(epoch: u32) -> Self {
        Self {
            epoch,
            ..Self::default()
        }
    }

    /// A reader (of epoch 0) expecting log index `next` first.
    pub fn starting_at(next: u64) -> Self {
        Self {
            next,
            ..Self::default()
        }
    }

    /// Index of the next frame this reader accepts.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// Refusals so far.
    pub fn rejects(&self) -> RejectCounts {
        self.rejects
    }

    /// Validate one frame; on success the reader moves on to the following index.
    pub fn accept(&mut self, bytes: &[u8]) -> Result<Record, Rejected> {
        let (epoch, seq, record) = decode(bytes).map_err(|e| {
            match e {
                FrameError::Truncated { .. } | FrameError::TrailingBytes { .. } => {
                    self.rejects.truncated += 1
                }
                FrameError::UnsupportedVersion { .. } => self.rejects.version += 1,
                FrameError::BadMagic | FrameError::BadCrc { .. } | FrameError::BadBody { .. } => {
                    self.rejects.corrupt += 1
                }
            }
            Rejected::Invalid(e)
        })?;
        if epoch != self.epoch {
            self.rejects.other_epoch += 1;
            return Err(Rejected::OtherEpoch {
                epoch,
                expected: self.epoch,
            });
        }
        let expected = self.next;
        if seq < expected {
            self.rejects.replayed += 1;
            return Err(Rejected::Replayed { seq, expected });
        }
        if seq > expected {
            self.rejects.out_of_order += 1;
            return Err(Rejected::OutOfOrder { seq, expected });
        }
        self.next += 1;
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Control, Event, InputData};
    use tandem_core::point::ExecPoint;

    fn point() -> ExecPoint {
        ExecPoint {
            det_exits: 1234,
            pc: 0xffff_8000_0010_2030,
            reg_hash: 0xdead_beef_cafe_f00d,
            precise: Some(99),
        }
    }

    fn samples() -> [Record; 8] {
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
        .map(|event| Record {
            point: point(),
            event,
        })
    }

    #[test]
    fn every_record_kind_round_trips() {
        let mut buf = [0u8; MAX_FRAME];
        for (i, record) in samples().iter().enumerate() {
            let n = encode(0, i as u64, record, &mut buf).unwrap();
            assert_eq!(decode(&buf[..n]), Ok((0, i as u64, record.clone())));
        }
    }

    #[test]
    fn a_reader_refuses_frames_of_another_epoch() {
        let mut buf = [0u8; MAX_FRAME];
        let mut reader = FrameReader::for_epoch(2);
        let n = encode(1, 0, &samples()[0], &mut buf).unwrap();
        assert_eq!(
            reader.accept(&buf[..n]),
            Err(Rejected::OtherEpoch {
                epoch: 1,
                expected: 2
            })
        );
        assert_eq!(reader.rejects().other_epoch, 1);
        let n = encode(2, 0, &samples()[0], &mut buf).unwrap();
        assert_eq!(reader.accept(&buf[..n]), Ok(samples()[0].clone()));
    }

    #[test]
    fn truncation_and_corruption_are_rejected_and_counted() {
        let mut buf = [0u8; MAX_FRAME];
        let n = encode(0, 0, &samples()[4], &mut buf).unwrap();
        let mut reader = FrameReader::default();
        for cut in 0..n {
            assert!(reader.accept(&buf[..cut]).is_err());
        }
        assert_eq!(reader.rejects().truncated, n as u64);
        for bit in 0..n * 8 {
            let mut bad = buf;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(reader.accept(&bad[..n]).is_err(), "bit {bit} flip accepted");
        }
        assert_eq!(reader.rejects().total(), (n + n * 8) as u64);
        assert_eq!(reader.next_seq(), 0);
    }

    #[test]
    fn replayed_and_out_of_order_frames_are_rejected() {
        let mut buf = [0u8; MAX_FRAME];
        let mut reader = FrameReader::default();
        let n = encode(0, 0, &samples()[0], &mut buf).unwrap();
        assert!(reader.accept(&buf[..n]).is_ok());
        assert_eq!(
            reader.accept(&buf[..n]),
            Err(Rejected::Replayed {
                seq: 0,
                expected: 1
            })
        );
        let n = encode(0, 2, &samples()[1], &mut buf).unwrap();
        assert_eq!(
            reader.accept(&buf[..n]),
            Err(Rejected::OutOfOrder {
                seq: 2,
                expected: 1
            })
        );
        let counts = reader.rejects();
        assert_eq!((counts.replayed, counts.out_of_order), (1, 1));
    }

    #[test]
    fn wrong_version_is_refused() {
        let mut buf = [0u8; MAX_FRAME];
        let n = encode(0, 0, &samples()[0], &mut buf).unwrap();
        buf[2] = VERSION + 1;
        assert_eq!(
            decode(&buf[..n]),
            Err(FrameError::UnsupportedVersion { found: VERSION + 1 })
        );
    }

    #[test]
    fn small_buffer_is_an_error_not_a_panic() {
        let mut buf = [0u8; 20];
        assert_eq!(
            encode(0, 0, &samples()[3], &mut buf),
            Err(EncodeError::BufferTooSmall { have: 20 })
        );
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn arbitrary_bytes_never_panic_and_never_pass_unchecked(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
                let mut reader = FrameReader::default();
                if let Ok(record) = reader.accept(&bytes) {
                    // Anything accepted must be a canonical frame for index 0.
                    let mut buf = [0u8; MAX_FRAME];
                    let n = encode(0, 0, &record, &mut buf).unwrap();
                    prop_assert_eq!(&buf[..n], &bytes[..]);
                } else {
                    prop_assert_eq!(reader.rejects().total(), 1);
                }
            }

            #[test]
            fn mutated_valid_frames_are_rejected(
                which in 0usize..8,
                pos in any::<prop::sample::Index>(),
                flip in 1u8..=255,
                cut in any::<prop::sample::Index>(),
            ) {
                let mut buf = [0u8; MAX_FRAME];
                let n = encode(0, 0, &samples()[which], &mut buf).unwrap();
                let mut flipped = buf;
                flipped[pos.index(n)] ^= flip;
                prop_assert!(decode(&flipped[..n]).is_err());
                prop_assert!(decode(&buf[..cut.index(n)]).is_err());
            }
        }
    }
}
