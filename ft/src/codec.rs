//! One record on the wire. Each record says only what changed since the previous record of the
//! log: both ends keep the same [`Deltas`], advanced record by record in log order.
//!
//! ```text
//! op (1)      kind (4 bits) | full (1) | exits (3)
//! exits       0..=6: the det_exits step; 7: a varint follows, the step times two, plus one when
//!             a precise counter follows (records with a counter always take this form)
//! precise     zigzag varint, the counter's change since the last record that had one
//! check       full: the PC's zigzag change since the last full PC, then the register hash
//!             (8 bytes LE), or nothing for a heartbeat at the last full point (its own kind);
//!             otherwise one check tag byte on a checked kind, nothing on bookkeeping
//! payload     by kind (see `kind`): a time read as its step since the last one, or as the
//!             difference from one of the last three steps (a periodic tick reads the clock at
//!             the same phase each time), whichever is shortest; heartbeat times as steps;
//!             output numbers only when not the next one; 64-bit digests and random values as
//!             8 bytes LE (a varint of a random value takes 10)
//! ```
//!
//! Varints are postcard's. The op byte packs three fields into one byte, which no serde format
//! does: it is written by hand, like the fixed-width hashes.

use crate::check::{Check, LoggedPoint};
use crate::record::{Control, Event, EventClass, InputData, MAX_INPUT, Record};
use postcard::ser_flavors::{Flavor, Slice};

/// Longest encoded record: an input record with every field at its widest.
pub const MAX_RECORD: usize = 320;

/// Record kinds, the op byte's top four bits.
mod kind {
    /// A time read as a plain step; `TIME_LIKE + k` as the difference from the step `k + 1`
    /// reads back.
    pub const TIME_READ: u8 = 0;
    pub const TIME_LIKE: u8 = 1;
    pub const RANDOM_READ: u8 = 4;
    pub const INTERRUPT: u8 = 5;
    /// An interrupt with the vector of the previous one.
    pub const INTERRUPT_AGAIN: u8 = 6;
    pub const INPUT: u8 = 7;
    pub const OUTPUT: u8 = 8;
    /// An output numbered one past the previous one.
    pub const OUTPUT_NEXT: u8 = 9;
    pub const OUTPUT_DONE: u8 = 10;
    /// `OutputDone` for the output after the previous one's.
    pub const OUTPUT_DONE_NEXT: u8 = 11;
    pub const HEARTBEAT: u8 = 12;
    /// A heartbeat whose full point is the last full point (a guest that has not moved).
    pub const HEARTBEAT_SAME: u8 = 13;
    /// Go-live or resync: a byte says which.
    pub const CONTROL: u8 = 14;

    /// Kinds whose point the backup checks (reads, interrupts, input, outputs).
    pub fn checked(kind: u8) -> bool {
        kind <= OUTPUT_NEXT
    }
}

/// Time steps remembered for prediction.
const STEPS: usize = 3;
const FULL: u8 = 1 << 3;
const EXITS_ESCAPE: u8 = 7;
const CONTROL_GO_LIVE: u8 = 0;
const CONTROL_RESYNC: u8 = 1;

/// Why a record could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// The output buffer is too small.
    NoRoom,
    /// A tag on a bookkeeping record or no check on a checked one: the wire cannot say it.
    CheckDoesNotFit,
    /// Fewer deterministic exits than the previous record (2^63 or more back): no primary
    /// logs that, and the wire does not carry it.
    ExitsWentBack,
}

/// The bytes are not one canonically encoded record for this state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed;

/// What the previous records said, so the next one only says what changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Deltas {
    det_exits: u64,
    precise: u64,
    /// The last full point's PC and register hash.
    pc: u64,
    regs: u64,
    time: u64,
    /// The last time steps, the latest first.
    steps: [u64; STEPS],
    beat: u64,
    vector: u32,
    next_output: u64,
    next_done: u64,
}

impl Deltas {
    /// Encode `event` at `point` into `out`; returns its length. The state moves on only on
    /// success.
    pub fn encode(
        &mut self,
        point: &LoggedPoint,
        event: &Event,
        out: &mut [u8],
    ) -> Result<usize, RecordError> {
        let mut next = *self;
        let mut w = Writer::new(out);
        let mut kind = next.kind_of(event);
        if kind == kind::HEARTBEAT && point.check == next.last_full() {
            kind = kind::HEARTBEAT_SAME;
        }
        let (full, tag) = match (point.check, kind::checked(kind)) {
            (Check::Full { .. }, _) => (FULL, None),
            (Check::Tag(tag), true) => (0, Some(tag)),
            (Check::Unchecked, false) => (0, None),
            _ => return Err(RecordError::CheckDoesNotFit),
        };
        let step = point.det_exits.wrapping_sub(next.det_exits);
        if step >> 63 != 0 {
            return Err(RecordError::ExitsWentBack);
        }
        match point.precise {
            // Below 7 the cast is lossless.
            None if step < u64::from(EXITS_ESCAPE) => w.byte(kind << 4 | full | step as u8)?,
            precise => {
                w.byte(kind << 4 | full | EXITS_ESCAPE)?;
                w.varint(step << 1 | u64::from(precise.is_some()))?;
            }
        }
        next.det_exits = point.det_exits;
        if let Some(counter) = point.precise {
            w.zigzag(counter.wrapping_sub(next.precise))?;
            next.precise = counter;
        }
        match (point.check, tag) {
            (Check::Full { .. }, _) if kind == kind::HEARTBEAT_SAME => {}
            (Check::Full { pc, reg_hash }, _) => {
                w.zigzag(pc.wrapping_sub(next.pc))?;
                w.fixed(reg_hash)?;
                (next.pc, next.regs) = (pc, reg_hash);
            }
            (_, Some(tag)) => w.byte(tag)?,
            _ => {}
        }
        next.encode_payload(event, &mut w)?;
        let len = w.finish()?;
        *self = next;
        Ok(len)
    }

    fn last_full(&self) -> Check {
        Check::Full {
            pc: self.pc,
            reg_hash: self.regs,
        }
    }

    /// The shortest way to write a time read of `value`: its kind and the number it writes
    /// (a plain step, or a zigzag difference from an earlier step). The first of equals wins.
    fn time_form(&self, value: u64) -> (u8, u64) {
        let step = value.wrapping_sub(self.time);
        let mut best = (kind::TIME_READ, step);
        for (k, earlier) in self.steps.iter().enumerate() {
            let difference = zigzag(step.wrapping_sub(*earlier));
            if varint_len(difference) < varint_len(best.1) {
                // `k` is below STEPS: the cast is lossless.
                best = (kind::TIME_LIKE + k as u8, difference);
            }
        }
        best
    }

    /// A time read of `value` has been written: remember it and its step.
    fn record_time(&mut self, value: u64) {
        let step = value.wrapping_sub(self.time);
        self.steps.rotate_right(1);
        self.steps[0] = step;
        self.time = value;
    }

    /// The kind `event` is written as after the records so far.
    fn kind_of(&self, event: &Event) -> u8 {
        match event {
            Event::TimeRead { value } => self.time_form(*value).0,
            Event::RandomRead { .. } => kind::RANDOM_READ,
            Event::Interrupt { vector } if *vector == self.vector => kind::INTERRUPT_AGAIN,
            Event::Interrupt { .. } => kind::INTERRUPT,
            Event::Input { .. } => kind::INPUT,
            Event::Output { seq, .. } if *seq == self.next_output => kind::OUTPUT_NEXT,
            Event::Output { .. } => kind::OUTPUT,
            Event::OutputDone { seq } if *seq == self.next_done => kind::OUTPUT_DONE_NEXT,
            Event::OutputDone { .. } => kind::OUTPUT_DONE,
            Event::Heartbeat { .. } => kind::HEARTBEAT,
            Event::Control(_) => kind::CONTROL,
        }
    }

    fn encode_payload(&mut self, event: &Event, w: &mut Writer<'_>) -> Result<(), RecordError> {
        match event {
            Event::TimeRead { value } => {
                w.varint(self.time_form(*value).1)?;
                self.record_time(*value);
            }
            Event::RandomRead { value } => w.fixed(*value)?,
            Event::Interrupt { vector } => {
                if *vector != self.vector {
                    w.varint(u64::from(*vector))?;
                }
                self.vector = *vector;
            }
            Event::Input { device, data } => {
                w.varint(u64::from(*device))?;
                w.varint(data.len() as u64)?;
                w.raw(data)?;
            }
            Event::Output { seq, digest } => {
                if *seq != self.next_output {
                    w.varint(seq.wrapping_sub(self.next_output))?;
                }
                w.fixed(*digest)?;
                self.next_output = seq.wrapping_add(1);
            }
            Event::OutputDone { seq } => {
                if *seq != self.next_done {
                    w.varint(seq.wrapping_sub(self.next_done))?;
                }
                self.next_done = seq.wrapping_add(1);
            }
            Event::Heartbeat { now } => {
                w.varint(now.wrapping_sub(self.beat))?;
                self.beat = *now;
            }
            Event::Control(control) => {
                let (which, epoch) = match control {
                    Control::GoLive { epoch } => (CONTROL_GO_LIVE, epoch),
                    Control::Resync { epoch } => (CONTROL_RESYNC, epoch),
                };
                w.byte(which)?;
                w.varint(u64::from(*epoch))?;
            }
        }
        Ok(())
    }

    /// Decode the record at the start of `bytes`; returns it and its length. Only the canonical
    /// encoding is accepted (what [`Deltas::encode`] writes for it: shortest varints, the short
    /// forms wherever they apply), so a frame that decodes is exactly the frame its sender wrote.
    /// The state moves on only on success.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<(Record, usize), Malformed> {
        let mut next = *self;
        let mut r = Reader { bytes };
        let op = r.byte()?;
        let kind = op >> 4;
        let (step, has_precise) = match op & EXITS_ESCAPE {
            EXITS_ESCAPE => {
                let v = r.varint()?;
                let (step, has_precise) = (v >> 1, v & 1 != 0);
                // Short steps without a counter fit the op byte.
                if !has_precise && step < u64::from(EXITS_ESCAPE) {
                    return Err(Malformed);
                }
                (step, has_precise)
            }
            inline => (u64::from(inline), false),
        };
        next.det_exits = next.det_exits.wrapping_add(step);
        let precise = if has_precise {
            next.precise = next.precise.wrapping_add(r.zigzag()?);
            Some(next.precise)
        } else {
            None
        };
        let check = if kind == kind::HEARTBEAT_SAME {
            // Only a full point can be the same as the last one.
            if op & FULL == 0 {
                return Err(Malformed);
            }
            next.last_full()
        } else if op & FULL != 0 {
            next.pc = next.pc.wrapping_add(r.zigzag()?);
            next.regs = r.fixed()?;
            let check = next.last_full();
            // The same point again has its own kind on heartbeats.
            if kind == kind::HEARTBEAT && check == self.last_full() {
                return Err(Malformed);
            }
            check
        } else if kind::checked(kind) {
            Check::Tag(r.byte()?)
        } else {
            Check::Unchecked
        };
        let event = next.decode_payload(kind, &mut r)?;
        let len = bytes.len() - r.bytes.len();
        *self = next;
        Ok((
            Record {
                point: LoggedPoint {
                    det_exits: next.det_exits,
                    precise,
                    check,
                },
                event,
            },
            len,
        ))
    }

    fn decode_payload(&mut self, kind: u8, r: &mut Reader<'_>) -> Result<Event, Malformed> {
        Ok(match kind {
            kind::TIME_READ..kind::RANDOM_READ => {
                let written = r.varint()?;
                let step = match usize::from(kind - kind::TIME_READ).checked_sub(1) {
                    None => written,
                    Some(k) => self.steps[k].wrapping_add(unzigzag(written)),
                };
                let value = self.time.wrapping_add(step);
                // Only the shortest form is what the sender writes.
                if self.time_form(value).0 != kind {
                    return Err(Malformed);
                }
                self.record_time(value);
                Event::TimeRead { value }
            }
            kind::RANDOM_READ => Event::RandomRead { value: r.fixed()? },
            kind::INTERRUPT | kind::INTERRUPT_AGAIN => {
                if kind == kind::INTERRUPT {
                    let vector = u32::try_from(r.varint()?).map_err(|_| Malformed)?;
                    // The same vector again has its own kind.
                    if vector == self.vector {
                        return Err(Malformed);
                    }
                    self.vector = vector;
                }
                Event::Interrupt {
                    vector: self.vector,
                }
            }
            kind::INPUT => {
                let device = u16::try_from(r.varint()?).map_err(|_| Malformed)?;
                let len = usize::try_from(r.varint()?).map_err(|_| Malformed)?;
                if len > MAX_INPUT {
                    return Err(Malformed);
                }
                let data = InputData::from_slice(r.take(len)?).map_err(|_| Malformed)?;
                Event::Input { device, data }
            }
            kind::OUTPUT | kind::OUTPUT_NEXT => {
                let mut seq = self.next_output;
                if kind == kind::OUTPUT {
                    seq = seq.wrapping_add(r.nonzero_varint()?);
                }
                self.next_output = seq.wrapping_add(1);
                Event::Output {
                    seq,
                    digest: r.fixed()?,
                }
            }
            kind::OUTPUT_DONE | kind::OUTPUT_DONE_NEXT => {
                let mut seq = self.next_done;
                if kind == kind::OUTPUT_DONE {
                    seq = seq.wrapping_add(r.nonzero_varint()?);
                }
                self.next_done = seq.wrapping_add(1);
                Event::OutputDone { seq }
            }
            kind::HEARTBEAT | kind::HEARTBEAT_SAME => {
                self.beat = self.beat.wrapping_add(r.varint()?);
                Event::Heartbeat { now: self.beat }
            }
            kind::CONTROL => {
                let which = r.byte()?;
                let epoch = u32::try_from(r.varint()?).map_err(|_| Malformed)?;
                Event::Control(match which {
                    CONTROL_GO_LIVE => Control::GoLive { epoch },
                    CONTROL_RESYNC => Control::Resync { epoch },
                    _ => return Err(Malformed),
                })
            }
            _ => return Err(Malformed),
        })
    }
}

/// Whether the backup compares a record's point: the wire carries a check exactly for these.
pub fn checked_class(class: EventClass) -> bool {
    class != EventClass::Bookkeeping
}

/// A wrapping difference as postcard writes an `i64`: small steps either way stay short.
fn zigzag(difference: u64) -> u64 {
    let signed = difference as i64;
    ((signed << 1) ^ (signed >> 63)) as u64
}

fn unzigzag(written: u64) -> u64 {
    (written >> 1) ^ (written & 1).wrapping_neg()
}

/// Bytes of the shortest varint for `value`.
fn varint_len(value: u64) -> usize {
    (64 - value.leading_zeros() as usize).div_ceil(7).max(1)
}

/// Refuse a varint of `len` bytes for `value` unless that is its shortest encoding.
pub(crate) fn shortest(len: usize, value: u64) -> Result<(), Malformed> {
    if len == varint_len(value) {
        Ok(())
    } else {
        Err(Malformed)
    }
}

/// One postcard serializer for a whole record: setting one up per integer would cost more than
/// the integer.
struct Writer<'a> {
    ser: postcard::Serializer<Slice<'a>>,
}

impl<'a> Writer<'a> {
    fn new(buf: &'a mut [u8]) -> Self {
        Self {
            ser: postcard::Serializer {
                output: Slice::new(buf),
            },
        }
    }

    /// Bytes written.
    fn finish(self) -> Result<usize, RecordError> {
        Ok(self
            .ser
            .output
            .finalize()
            .map_err(|_| RecordError::NoRoom)?
            .len())
    }

    fn raw(&mut self, bytes: &[u8]) -> Result<(), RecordError> {
        self.ser
            .output
            .try_extend(bytes)
            .map_err(|_| RecordError::NoRoom)
    }

    fn byte(&mut self, byte: u8) -> Result<(), RecordError> {
        self.ser
            .output
            .try_push(byte)
            .map_err(|_| RecordError::NoRoom)
    }

    fn fixed(&mut self, value: u64) -> Result<(), RecordError> {
        self.raw(&value.to_le_bytes())
    }

    fn varint(&mut self, value: u64) -> Result<(), RecordError> {
        serde::Serializer::serialize_u64(&mut self.ser, value).map_err(|_| RecordError::NoRoom)
    }

    /// A wrapping difference as a signed varint.
    fn zigzag(&mut self, difference: u64) -> Result<(), RecordError> {
        serde::Serializer::serialize_i64(&mut self.ser, difference as i64)
            .map_err(|_| RecordError::NoRoom)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.bytes.len() < n {
            return Err(Malformed);
        }
        let (taken, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(taken)
    }

    fn byte(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    fn fixed(&mut self) -> Result<u64, Malformed> {
        let mut word = [0u8; 8];
        word.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(word))
    }

    /// A shortest varint (postcard also reads overlong ones, which no sender writes).
    fn varint(&mut self) -> Result<u64, Malformed> {
        let (value, rest) = postcard::take_from_bytes::<u64>(self.bytes).map_err(|_| Malformed)?;
        shortest(self.bytes.len() - rest.len(), value)?;
        self.bytes = rest;
        Ok(value)
    }

    /// A varint that is not 0: where 0 has its own shorter form.
    fn nonzero_varint(&mut self) -> Result<u64, Malformed> {
        match self.varint()? {
            0 => Err(Malformed),
            value => Ok(value),
        }
    }

    /// A wrapping difference written by [`Writer::zigzag`].
    fn zigzag(&mut self) -> Result<u64, Malformed> {
        let (value, rest) = postcard::take_from_bytes::<i64>(self.bytes).map_err(|_| Malformed)?;
        shortest(self.bytes.len() - rest.len(), zigzag(value as u64))?;
        self.bytes = rest;
        Ok(value as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;
    use tandem_core::point::ExecPoint;

    const KERNEL: u64 = 0xffff_ffff_8100_0000;

    fn at(det_exits: u64, offset: u64, precise: Option<u64>) -> ExecPoint {
        ExecPoint {
            det_exits,
            pc: KERNEL + offset,
            reg_hash: 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(det_exits.wrapping_add(1)),
            precise,
        }
    }

    /// Encodes `records` one after the other; returns each one's bytes.
    fn encode_all(records: &[Record]) -> Vec<Vec<u8>> {
        let mut deltas = Deltas::default();
        records
            .iter()
            .map(|r| {
                let mut buf = [0u8; MAX_RECORD];
                let n = deltas.encode(&r.point, &r.event, &mut buf).unwrap();
                buf[..n].to_vec()
            })
            .collect()
    }

    fn decode_all(encoded: &[Vec<u8>]) -> Vec<Record> {
        let mut deltas = Deltas::default();
        encoded
            .iter()
            .map(|bytes| {
                let (record, n) = deltas.decode(bytes).unwrap();
                assert_eq!(n, bytes.len());
                record
            })
            .collect()
    }

    fn record(point: LoggedPoint, event: Event) -> Record {
        Record { point, event }
    }

    fn mixed_log() -> Vec<Record> {
        let data = InputData::from_slice(&[0xa5; MAX_INPUT]).unwrap();
        let p = |n, off, precise| at(n, off, precise);
        let far = 1 << 62;
        Vec::from([
            record(
                LoggedPoint::full(&p(1, 0x40, None)),
                Event::TimeRead { value: 5_000 },
            ),
            record(
                LoggedPoint::tagged(&p(1, 0x48, None)),
                Event::Interrupt { vector: 236 },
            ),
            record(
                LoggedPoint::tagged(&p(2, 0x48, None)),
                Event::Interrupt { vector: 236 },
            ),
            record(
                LoggedPoint::tagged(&p(9, 0x10, Some(7))),
                Event::Interrupt { vector: 32 },
            ),
            record(
                LoggedPoint::tagged(&p(9, 0x10, Some(3))),
                Event::RandomRead { value: u64::MAX },
            ),
            record(
                LoggedPoint::tagged(&p(9, 0x10, None)),
                Event::TimeRead { value: 1 },
            ),
            record(
                LoggedPoint::full(&p(far, 0, None)),
                Event::TimeRead { value: 1_000_001 },
            ),
            record(
                LoggedPoint::tagged(&p(far, 0, None)),
                Event::TimeRead { value: 2_000_002 },
            ),
            record(
                LoggedPoint::tagged(&p(far, 0, None)),
                Event::Input { device: 7, data },
            ),
            record(
                LoggedPoint::tagged(&p(far + 6, 0, None)),
                Event::Output { seq: 0, digest: 3 },
            ),
            record(
                LoggedPoint::tagged(&p(far + 13, 0, None)),
                Event::Output { seq: 5, digest: 4 },
            ),
            record(
                LoggedPoint::unchecked(&p(far + 13, 0, None)),
                Event::OutputDone { seq: 0 },
            ),
            record(
                LoggedPoint::unchecked(&p(far + 13, 0, None)),
                Event::OutputDone { seq: 5 },
            ),
            record(
                LoggedPoint::full(&p(far + 20, 0x7f_0000, None)),
                Event::Heartbeat { now: 99 },
            ),
            record(
                LoggedPoint::full(&p(far + 20, 0x7f_0000, None)),
                Event::Heartbeat { now: 100 },
            ),
            record(
                LoggedPoint::full(&p(far + 21, 0x7f_0000, Some(1))),
                Event::Heartbeat { now: 101 },
            ),
            record(
                LoggedPoint::unchecked(&p(far + 21, 0, None)),
                Event::Heartbeat { now: 98 },
            ),
            record(
                LoggedPoint::unchecked(&p(far + 22, 0, None)),
                Event::Control(Control::GoLive { epoch: 3 }),
            ),
            record(
                LoggedPoint::unchecked(&p(far + 22, 0, None)),
                Event::Control(Control::Resync { epoch: u32::MAX }),
            ),
        ])
    }

    #[test]
    fn every_kind_round_trips_whatever_the_steps() {
        // Big and small steps, times and counters going back as well as forward, counters
        // appearing and vanishing, repeated vectors and numbers out of turn: each record
        // decodes to itself.
        let log = mixed_log();
        assert_eq!(decode_all(&encode_all(&log)), log);
    }

    #[test]
    fn an_idle_kernel_tick_takes_a_few_bytes() {
        let records = [
            record(
                LoggedPoint::full(&at(3, 0x1f_3a40, None)),
                Event::Interrupt { vector: 236 },
            ),
            record(
                LoggedPoint::tagged(&at(4, 0x2_0b10, None)),
                Event::TimeRead { value: 1_000_000 },
            ),
            record(
                LoggedPoint::tagged(&at(8, 0x1f_3a40, None)),
                Event::Interrupt { vector: 236 },
            ),
            record(
                LoggedPoint::tagged(&at(9, 0x2_0b10, None)),
                Event::TimeRead { value: 2_000_017 },
            ),
            record(
                LoggedPoint::unchecked(&at(9, 0, None)),
                Event::OutputDone { seq: 0 },
            ),
        ];
        let sizes: Vec<usize> = encode_all(&records).iter().map(Vec::len).collect();
        // The log's first full point: op (with the 3-exit step), the whole kernel PC as a step
        // from 0 (5 bytes), the hash, a new vector. Then op + tag + the 1 ms time step; op + tag
        // for an interrupt with the last vector 4 exits on; op + tag + the time step's
        // difference from the last one (17 ns); a 1-byte `OutputDone`.
        assert_eq!(sizes, [1 + 5 + 8 + 2, 2 + 3, 2, 2 + 1, 1]);
    }

    #[test]
    fn a_time_step_is_predicted_from_any_of_the_last_three() {
        // Three reads a tick at the same phases: after the first tick, each step is written as
        // its (small) difference from the step three reads back.
        let mut log = Vec::new();
        for tick in 0..5u64 {
            for (n, phase) in [0u64, 300_000, 2_200_000].into_iter().enumerate() {
                let value = tick * 8_000_000 + phase + tick * 7 + n as u64;
                let point = at(6 * tick + n as u64, 0, None);
                log.push(record(
                    LoggedPoint::tagged(&point),
                    Event::TimeRead { value },
                ));
            }
        }
        let encoded = encode_all(&log);
        assert_eq!(decode_all(&encoded), log);
        let late: Vec<usize> = encoded[6..].iter().map(Vec::len).collect();
        assert!(late.iter().all(|&n| n == 3), "op + tag + 1: {late:?}");
    }

    #[test]
    fn what_the_encoder_would_not_write_is_refused() {
        let valid = [kind::OUTPUT_DONE_NEXT << 4];
        assert!(Deltas::default().decode(&valid).is_ok());
        let refused: [&[u8]; 8] = [
            // `OutputDone` for the next output, with its number spelt out.
            &[kind::OUTPUT_DONE << 4, 0],
            // A number written as an overlong varint.
            &[kind::OUTPUT_DONE << 4, 0x81, 0x00],
            // A step of 1 exit, without a counter, in the escape form.
            &[kind::OUTPUT_DONE_NEXT << 4 | EXITS_ESCAPE, 2],
            // A kind no encoder writes.
            &[15 << 4],
            // A heartbeat at the last full point (here the initial one), spelt out in full.
            &[kind::HEARTBEAT << 4 | FULL, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            // The short form of that, without its full bit.
            &[kind::HEARTBEAT_SAME << 4, 0],
            // A time step of 1 as a difference from the last step (0): the plain step is as short.
            &[kind::TIME_LIKE << 4, 0xaa, 2],
            // A control record of no known sort.
            &[kind::CONTROL << 4, 2, 0],
        ];
        for bytes in refused {
            let mut deltas = Deltas::default();
            assert_eq!(deltas.decode(bytes), Err(Malformed), "{bytes:x?}");
            assert_eq!(deltas, Deltas::default());
        }
    }

    #[test]
    fn a_failed_encode_or_decode_leaves_the_state_alone() {
        let log = mixed_log();
        let mut deltas = Deltas::default();
        let mut small = [0u8; 8];
        let before = deltas;
        assert_eq!(
            deltas.encode(&log[8].point, &log[8].event, &mut small),
            Err(RecordError::NoRoom)
        );
        assert_eq!(deltas, before);
        let untagged = LoggedPoint::unchecked(&at(1, 0, None));
        assert_eq!(
            deltas.encode(
                &untagged,
                &Event::TimeRead { value: 1 },
                &mut [0; MAX_RECORD]
            ),
            Err(RecordError::CheckDoesNotFit)
        );
        let tagged = LoggedPoint::tagged(&at(1, 0, None));
        assert_eq!(
            deltas.encode(&tagged, &Event::OutputDone { seq: 0 }, &mut [0; MAX_RECORD]),
            Err(RecordError::CheckDoesNotFit)
        );
        let mut later = deltas;
        later
            .encode(&tagged, &Event::TimeRead { value: 1 }, &mut [0; MAX_RECORD])
            .unwrap();
        let back = LoggedPoint::tagged(&at(0, 0, None));
        assert_eq!(
            later.encode(&back, &Event::TimeRead { value: 1 }, &mut [0; MAX_RECORD]),
            Err(RecordError::ExitsWentBack)
        );
        for encoded in encode_all(&log) {
            for cut in 0..encoded.len() {
                assert_eq!(deltas.decode(&encoded[..cut]), Err(Malformed));
                assert_eq!(deltas, before);
            }
        }
    }

    #[test]
    fn the_longest_record_fits_the_limit() {
        let data = InputData::from_slice(&[0xff; MAX_INPUT]).unwrap();
        let point = LoggedPoint::full(&ExecPoint {
            det_exits: (1 << 63) - 1,
            pc: 1 << 63,
            reg_hash: u64::MAX,
            precise: Some(1 << 63),
        });
        let event = Event::Input {
            device: u16::MAX,
            data,
        };
        let mut buf = [0u8; MAX_RECORD];
        assert!(Deltas::default().encode(&point, &event, &mut buf).is_ok());
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        fn event() -> impl Strategy<Value = Event> {
            prop_oneof![
                any::<u64>().prop_map(|value| Event::TimeRead { value }),
                (0u64..3, 0u64..100).prop_map(|(tick, jitter)| Event::TimeRead {
                    value: tick * 1_000_000 + jitter
                }),
                any::<u64>().prop_map(|value| Event::RandomRead { value }),
                (0u32..4).prop_map(|vector| Event::Interrupt { vector }),
                (
                    any::<u16>(),
                    proptest::collection::vec(any::<u8>(), 0..MAX_INPUT)
                )
                    .prop_map(|(device, data)| Event::Input {
                        device,
                        data: InputData::from_slice(&data).unwrap(),
                    }),
                (0u64..4, any::<u64>()).prop_map(|(seq, digest)| Event::Output { seq, digest }),
                (0u64..4).prop_map(|seq| Event::OutputDone { seq }),
                any::<u64>().prop_map(|now| Event::Heartbeat { now }),
                any::<u32>().prop_map(|epoch| Event::Control(Control::GoLive { epoch })),
            ]
        }

        /// A step in exits (mostly short), the point's other values, and whether it is full.
        fn step() -> impl Strategy<Value = (u64, u64, u64, Option<u64>, bool)> {
            (
                prop_oneof![0u64..9, 0u64..1 << 40],
                prop_oneof![Just(KERNEL), any::<u64>()],
                prop_oneof![Just(0u64), any::<u64>()],
                proptest::option::of(0u64..1000),
                any::<bool>(),
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn any_log_round_trips(log in proptest::collection::vec((step(), event()), 1..40)) {
                let mut det_exits = 0;
                let records: Vec<Record> = log
                    .into_iter()
                    .map(|((step, pc, reg_hash, precise, full), event)| {
                        det_exits += step;
                        let p = ExecPoint { det_exits, pc, reg_hash, precise };
                        let point = match (checked_class(event.class()), full) {
                            (_, true) => LoggedPoint::full(&p),
                            (true, false) => LoggedPoint::tagged(&p),
                            (false, false) => LoggedPoint::unchecked(&p),
                        };
                        Record { point, event }
                    })
                    .collect();
                prop_assert_eq!(decode_all(&encode_all(&records)), records);
            }

            #[test]
            fn arbitrary_bytes_never_panic_and_decode_only_canonically(
                bytes in proptest::collection::vec(any::<u8>(), 0..32),
            ) {
                let mut deltas = Deltas::default();
                if let Ok((record, n)) = deltas.decode(&bytes) {
                    let mut buf = [0u8; MAX_RECORD];
                    let m = Deltas::default().encode(&record.point, &record.event, &mut buf).unwrap();
                    prop_assert_eq!(&buf[..m], &bytes[..n]);
                }
            }
        }
    }
}
