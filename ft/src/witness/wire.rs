//! The witness's datagrams: fixed little-endian layouts ending in a CRC-32C of everything before
//! it, so a corrupted answer can never name a winner.
//!
//! ```text
//! request: kind u8 (1 claim, 2 query) | cluster u32 | epoch u32 | side u8 (1 primary, 2 backup, 0 in a query) | nonce u64 | crc u32
//! answer:  kind u8 (3) | cluster u32 | epoch u32 (as asked) | holder u8 (0 nobody, 1 primary, 2 backup) | current u32 | nonce u64 (echoed) | crc u32
//! ```
//! `current` is the newest epoch ever claimed in the cluster (0: none), so an answer with
//! `current > epoch` says the epoch asked about is stale. Epochs start at 1.

use crate::arbiter::{ArbiterError, Side};

/// Length of a request datagram.
pub const REQUEST_LEN: usize = 1 + 4 + 4 + 1 + 8 + 4;
/// Length of an answer datagram.
pub const ANSWER_LEN: usize = 1 + 4 + 4 + 1 + 4 + 8 + 4;

const KIND_CLAIM: u8 = 1;
const KIND_QUERY: u8 = 2;
const KIND_ANSWER: u8 = 3;

const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// What a request asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    /// Claim the epoch for this side (test-and-set).
    Claim(Side),
    /// Who holds the epoch, without claiming it.
    Query,
}

/// A board's question to the witness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub cluster: u32,
    pub epoch: u32,
    pub ask: Ask,
    /// Chosen by the asker and echoed in the answer, which is how it recognises its answers.
    pub nonce: u64,
}

/// The witness's answer.
///
/// Its shape is checked on decoding: `holder` is `Some` exactly when `current == epoch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    pub cluster: u32,
    /// The epoch asked about.
    pub epoch: u32,
    /// Who holds `epoch` (`None`: nobody yet, or `epoch` is stale).
    pub holder: Option<Side>,
    /// The newest epoch claimed in the cluster (0: none).
    pub current: u32,
    pub nonce: u64,
}

fn side_code(side: Option<Side>) -> u8 {
    match side {
        None => 0,
        Some(Side::Primary) => 1,
        Some(Side::Backup) => 2,
    }
}

fn side_from(code: u8) -> Option<Option<Side>> {
    match code {
        0 => Some(None),
        1 => Some(Some(Side::Primary)),
        2 => Some(Some(Side::Backup)),
        _ => None,
    }
}

/// Appends fields to a fixed-size datagram and seals it with the CRC.
struct Put<const N: usize> {
    bytes: [u8; N],
    at: usize,
}

impl<const N: usize> Put<N> {
    fn new() -> Self {
        Self {
            bytes: [0; N],
            at: 0,
        }
    }

    fn bytes(mut self, field: &[u8]) -> Self {
        self.bytes[self.at..self.at + field.len()].copy_from_slice(field);
        self.at += field.len();
        self
    }

    fn seal(self) -> [u8; N] {
        let crc = CRC.checksum(&self.bytes[..self.at]);
        self.bytes(&crc.to_le_bytes()).bytes
    }
}

/// Reads fields from a datagram whose length and CRC were checked; every read is bounds-checked
/// all the same, so no input can make it panic.
struct Take<'a> {
    bytes: &'a [u8],
}

impl Take<'_> {
    fn array<const K: usize>(&mut self) -> Option<[u8; K]> {
        let (field, rest) = self.bytes.split_first_chunk::<K>()?;
        self.bytes = rest;
        Some(*field)
    }

    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }
}

/// The body of a datagram of exactly `len` bytes whose CRC is right.
fn checked(bytes: &[u8], len: usize) -> Option<Take<'_>> {
    if bytes.len() != len {
        return None;
    }
    let (body, crc) = bytes.split_at(len - 4);
    (CRC.checksum(body).to_le_bytes() == crc).then_some(Take { bytes: body })
}

impl Request {
    /// The request as sent.
    pub fn encode(&self) -> [u8; REQUEST_LEN] {
        let (kind, side) = match self.ask {
            Ask::Claim(side) => (KIND_CLAIM, Some(side)),
            Ask::Query => (KIND_QUERY, None),
        };
        Put::new()
            .bytes(&[kind])
            .bytes(&self.cluster.to_le_bytes())
            .bytes(&self.epoch.to_le_bytes())
            .bytes(&[side_code(side)])
            .bytes(&self.nonce.to_le_bytes())
            .seal()
    }

    /// A received request; `None` if its length, CRC, kind or side is wrong, a claim names no
    /// side, a query names one, or the epoch is 0.
    pub fn decode(bytes: &[u8]) -> Option<Request> {
        let mut take = checked(bytes, REQUEST_LEN)?;
        let kind = take.u8()?;
        let cluster = take.u32()?;
        let epoch = take.u32()?;
        let side = side_from(take.u8()?)?;
        let nonce = take.u64()?;
        let ask = match (kind, side) {
            (KIND_CLAIM, Some(side)) => Ask::Claim(side),
            (KIND_QUERY, None) => Ask::Query,
            _ => return None,
        };
        (epoch != 0).then_some(Request {
            cluster,
            epoch,
            ask,
            nonce,
        })
    }
}

impl Answer {
    /// What the answer says about `epoch`, as an [`crate::arbiter::Arbiter`] reports it.
    pub fn outcome(&self) -> Result<Option<Side>, ArbiterError> {
        if self.current > self.epoch {
            return Err(ArbiterError::StaleEpoch {
                mine: self.epoch,
                current: self.current,
            });
        }
        Ok(self.holder)
    }

    /// The answer as sent.
    pub fn encode(&self) -> [u8; ANSWER_LEN] {
        Put::new()
            .bytes(&[KIND_ANSWER])
            .bytes(&self.cluster.to_le_bytes())
            .bytes(&self.epoch.to_le_bytes())
            .bytes(&[side_code(self.holder)])
            .bytes(&self.current.to_le_bytes())
            .bytes(&self.nonce.to_le_bytes())
            .seal()
    }

    /// A received answer; `None` if its length, CRC, kind or holder is wrong, the epoch is 0, or
    /// it has a shape the witness never sends (a holder for an epoch other than the newest, or
    /// no holder for the newest).
    pub fn decode(bytes: &[u8]) -> Option<Answer> {
        let mut take = checked(bytes, ANSWER_LEN)?;
        if take.u8()? != KIND_ANSWER {
            return None;
        }
        let answer = Answer {
            cluster: take.u32()?,
            epoch: take.u32()?,
            holder: side_from(take.u8()?)?,
            current: take.u32()?,
            nonce: take.u64()?,
        };
        let shaped = answer.holder.is_some() == (answer.current == answer.epoch);
        (answer.epoch != 0 && shaped).then_some(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn claim() -> Request {
        Request {
            cluster: 0xdead_beef,
            epoch: 3,
            ask: Ask::Claim(Side::Backup),
            nonce: 0x0123_4567_89ab_cdef,
        }
    }

    fn answer() -> Answer {
        Answer {
            cluster: 0xdead_beef,
            epoch: 3,
            holder: Some(Side::Primary),
            current: 3,
            nonce: 0x0123_4567_89ab_cdef,
        }
    }

    /// `bytes` with its CRC recomputed, to test the checks behind the CRC.
    fn resealed(mut bytes: Vec<u8>) -> Vec<u8> {
        let n = bytes.len() - 4;
        let crc = CRC.checksum(&bytes[..n]);
        bytes[n..].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    #[test]
    fn layouts_are_as_documented() {
        let r = claim().encode();
        assert_eq!(r.len(), 22);
        assert_eq!(r[0], 1);
        assert_eq!(&r[1..5], &0xdead_beefu32.to_le_bytes());
        assert_eq!(&r[5..9], &3u32.to_le_bytes());
        assert_eq!(r[9], 2);
        assert_eq!(&r[10..18], &0x0123_4567_89ab_cdefu64.to_le_bytes());
        assert_eq!(&r[18..], &CRC.checksum(&r[..18]).to_le_bytes());
        let a = answer().encode();
        assert_eq!(a.len(), 26);
        assert_eq!((a[0], a[9]), (3, 1));
        assert_eq!(&a[10..14], &3u32.to_le_bytes());
        assert_eq!(&a[14..22], &0x0123_4567_89ab_cdefu64.to_le_bytes());
    }

    #[test]
    fn every_single_bit_flip_is_rejected() {
        let r = claim().encode();
        let a = answer().encode();
        for bit in 0..r.len() * 8 {
            let mut bad = r;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(Request::decode(&bad), None, "request bit {bit}");
        }
        for bit in 0..a.len() * 8 {
            let mut bad = a;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(Answer::decode(&bad), None, "answer bit {bit}");
        }
    }

    #[test]
    fn wrong_lengths_are_rejected() {
        let r = claim().encode();
        let mut long = r.to_vec();
        long.push(0);
        assert_eq!(Request::decode(&resealed(long)), None);
        assert_eq!(Request::decode(&resealed(r[1..].to_vec())), None);
        assert_eq!(Request::decode(&[]), None);
        assert_eq!(Answer::decode(&r), None, "a request is not an answer");
        assert_eq!(Request::decode(&answer().encode()), None);
    }

    #[test]
    fn bad_kind_side_epoch_or_shape_is_rejected_even_with_a_good_crc() {
        let with = |at: usize, value: u8, bytes: &[u8]| {
            let mut v = bytes.to_vec();
            v[at] = value;
            resealed(v)
        };
        let r = claim().encode();
        assert_eq!(Request::decode(&with(0, 3, &r)), None, "kind");
        assert_eq!(Request::decode(&with(9, 3, &r)), None, "side");
        assert_eq!(Request::decode(&with(9, 0, &r)), None, "claim without side");
        let q = Request {
            ask: Ask::Query,
            ..claim()
        }
        .encode();
        assert!(Request::decode(&q).is_some());
        assert_eq!(Request::decode(&with(9, 1, &q)), None, "query with side");
        let epoch0 = Request {
            epoch: 0,
            ..claim()
        };
        assert_eq!(Request::decode(&epoch0.encode()), None);
        let a = answer().encode();
        assert_eq!(Answer::decode(&with(0, 1, &a)), None, "kind");
        assert_eq!(Answer::decode(&with(9, 3, &a)), None, "holder");
        assert_eq!(
            Answer::decode(&with(9, 0, &a)),
            None,
            "nobody for the newest"
        );
        let stale_with_holder = Answer {
            current: 4,
            ..answer()
        };
        assert_eq!(Answer::decode(&stale_with_holder.encode()), None);
    }

    #[test]
    fn outcome_reads_stale_holder_and_nobody() {
        assert_eq!(answer().outcome(), Ok(Some(Side::Primary)));
        let stale = Answer {
            holder: None,
            current: 5,
            ..answer()
        };
        assert_eq!(
            stale.outcome(),
            Err(ArbiterError::StaleEpoch {
                mine: 3,
                current: 5
            })
        );
        let nobody = Answer {
            holder: None,
            current: 2,
            ..answer()
        };
        assert_eq!(nobody.outcome(), Ok(None));
    }

    fn any_side() -> impl Strategy<Value = Side> {
        prop_oneof![Just(Side::Primary), Just(Side::Backup)]
    }

    proptest! {
        #[test]
        fn requests_round_trip(cluster: u32, epoch in 1u32.., nonce: u64, side in proptest::option::of(any_side())) {
            let ask = side.map_or(Ask::Query, Ask::Claim);
            let r = Request { cluster, epoch, ask, nonce };
            prop_assert_eq!(Request::decode(&r.encode()), Some(r));
        }

        #[test]
        fn answers_round_trip(cluster: u32, epoch in 1u32.., nonce: u64, side in any_side(), newer in 0u32..3) {
            let current = epoch.saturating_add(newer);
            let holder = (current == epoch).then_some(side);
            let a = Answer { cluster, epoch, holder, current, nonce };
            prop_assert_eq!(Answer::decode(&a.encode()), Some(a));
            let older = Answer { holder: None, current: epoch - 1, ..a };
            prop_assert_eq!(Answer::decode(&older.encode()), Some(older));
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = Request::decode(&bytes);
            let _ = Answer::decode(&bytes);
        }
    }
}
