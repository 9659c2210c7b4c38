//! What the log keeps of an execution point: its position exactly, and of the PC and register
//! hash either both in full or only a one-byte check tag (most records), so the backup can still
//! compare its own point with every record it replays.

use tandem_core::point::{ExecPoint, Position};

/// How a logged point's PC and register hash can be checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Both values as the primary saw them.
    Full { pc: u64, reg_hash: u64 },
    /// Only [`check_tag`] of them: a different point is caught 255 times in 256.
    Tag(u8),
    /// Nothing: the backup never compares the points of bookkeeping records.
    Unchecked,
}

/// An execution point as the log carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoggedPoint {
    /// Deterministic exits taken so far (exact).
    pub det_exits: u64,
    /// Precise progress counter where the platform has one (exact).
    pub precise: Option<u64>,
    /// What is left of the PC and register hash.
    pub check: Check,
}

impl LoggedPoint {
    /// `point` with its PC and register hash in full.
    pub fn full(point: &ExecPoint) -> Self {
        Self::with(
            point,
            Check::Full {
                pc: point.pc,
                reg_hash: point.reg_hash,
            },
        )
    }

    /// `point` with only the check tag of its PC and register hash.
    pub fn tagged(point: &ExecPoint) -> Self {
        Self::with(point, Check::Tag(check_tag(point.pc, point.reg_hash)))
    }

    /// `point`'s position only.
    pub fn unchecked(point: &ExecPoint) -> Self {
        Self::with(point, Check::Unchecked)
    }

    fn with(point: &ExecPoint, check: Check) -> Self {
        Self {
            det_exits: point.det_exits,
            precise: point.precise,
            check,
        }
    }

    /// The ordering part of the point.
    pub fn position(&self) -> Position {
        Position {
            det_exits: self.det_exits,
            precise: self.precise.unwrap_or(0),
        }
    }

    /// Whether `actual` is this point, as far as the log can tell.
    pub fn matches(&self, actual: &ExecPoint) -> bool {
        let same_place = self.det_exits == actual.det_exits && self.precise == actual.precise;
        same_place
            && match self.check {
                Check::Full { pc, reg_hash } => (pc, reg_hash) == (actual.pc, actual.reg_hash),
                Check::Tag(tag) => tag == check_tag(actual.pc, actual.reg_hash),
                Check::Unchecked => true,
            }
    }
}

/// One byte that depends on every bit of `pc` and `reg_hash`: the top byte after two rounds of
/// the MurmurHash3 finaliser (a bijection that spreads each input bit over the whole word). Not
/// meant to resist an adversary, only to notice a replay that went elsewhere.
pub fn check_tag(pc: u64, reg_hash: u64) -> u8 {
    (mix(mix(pc) ^ reg_hash) >> 56) as u8
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel_point(offset: u64, reg_hash: u64) -> ExecPoint {
        ExecPoint {
            det_exits: 7,
            pc: 0xffff_ffff_8100_0000 + offset,
            reg_hash,
            precise: None,
        }
    }

    #[test]
    fn every_bit_of_pc_and_registers_reaches_the_tag() {
        // A single flipped bit changes the tag unless it collides (1 in 256 per flip): over the
        // 128 bits of a few points, nearly all flips must show, and no bit may be ignored.
        let mut shown = 0;
        let mut per_bit = [0u32; 128];
        let samples = [
            (0x1234, 0x9e37_79b9_7f4a_7c15),
            (0x40, 0xdead_beef_cafe_f00d),
            (0x7f_fff0, 1),
            (0, 0),
        ];
        for (offset, reg_hash) in samples {
            let p = kernel_point(offset, reg_hash);
            let tag = check_tag(p.pc, p.reg_hash);
            for (bit, count) in per_bit.iter_mut().enumerate() {
                let (pc, regs) = if bit < 64 {
                    (p.pc ^ 1 << bit, p.reg_hash)
                } else {
                    (p.pc, p.reg_hash ^ 1 << (bit - 64))
                };
                if check_tag(pc, regs) != tag {
                    shown += 1;
                    *count += 1;
                }
            }
        }
        assert!(
            shown >= 4 * 128 - 8,
            "only {shown} of 512 flips changed the tag"
        );
        assert!(
            per_bit.iter().all(|&n| n >= 3),
            "a bit is ignored: {per_bit:?}"
        );
    }

    #[test]
    fn a_tag_or_a_full_point_catches_a_different_point_and_position_is_exact() {
        let here = kernel_point(0x10, 0xabcd);
        let elsewhere = kernel_point(0x14, 0xabcd);
        for logged in [LoggedPoint::full(&here), LoggedPoint::tagged(&here)] {
            assert!(logged.matches(&here));
            assert!(!logged.matches(&elsewhere), "{logged:?}");
            let later = ExecPoint {
                det_exits: 8,
                ..here
            };
            assert!(!logged.matches(&later));
            let precise = ExecPoint {
                precise: Some(0),
                ..here
            };
            assert!(!logged.matches(&precise), "None and Some(0) differ");
        }
        assert!(LoggedPoint::unchecked(&here).matches(&elsewhere));
        assert_eq!(LoggedPoint::tagged(&here).position(), here.position());
    }
}
