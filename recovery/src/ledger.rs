//! The ledger header. The ledger itself is an array of per-CPU slots of plain `#[repr(C)]` data
//! (vCPU registers, device models, exit counters, exit journals) that a backend places in memory
//! no boot path clears; the header in front of it says what layout the slots have, how often the
//! hypervisor has booted over it, and carries a checksum so a recovery never attaches to a header
//! a fault overwrote.

use tandem_core::bundle::crc32;

use crate::cause::ResetCause;

pub const MAGIC: u64 = u64::from_le_bytes(*b"TNDMLDGR");
/// Bumped whenever the layout of the header or of any slot type changes.
pub const VERSION: u32 = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Header {
    magic: u64,
    version: u32,
    slots: u32,
    slot_size: u32,
    /// Boots over this ledger: 1 after the cold boot that formatted it, +1 per microreboot or
    /// microreset.
    boots: u32,
    /// What ended the previous run over this memory in a full reset ([`ResetCause`]), so the
    /// cold boot after it can say why.
    reset_cause: u32,
    /// The backend's clock at the cold boot and its frequency: time goes on across a recovery
    /// without recalibration (recovery.md 6.7).
    clock_base: u64,
    clock_hz: u64,
    /// CRC-32 of every field above.
    checksum: u32,
}

/// Why a ledger cannot be re-attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    /// Not a ledger at all (cold memory, or overwritten).
    Magic,
    /// Written by a build with another layout.
    Version { found: u32 },
    /// Another number or size of slots than this configuration needs.
    Geometry { slots: u32, slot_size: u32 },
    /// The fields do not match their checksum: a fault changed the header.
    Checksum { found: u32, expected: u32 },
}

impl Header {
    /// The header of a freshly formatted ledger of `slots` slots of `slot_size` bytes, on a clock
    /// that read `clock_base` at boot and runs at `clock_hz`.
    pub fn formatted(slots: u32, slot_size: u32, clock_base: u64, clock_hz: u64) -> Self {
        Self {
            magic: MAGIC,
            version: VERSION,
            slots,
            slot_size,
            boots: 1,
            reset_cause: ResetCause::None as u32,
            clock_base,
            clock_hz,
            checksum: 0,
        }
        .sealed()
    }

    fn fields(&self) -> [u8; 44] {
        let mut bytes = [0u8; 44];
        let parts: [&[u8]; 8] = [
            &self.magic.to_le_bytes(),
            &self.version.to_le_bytes(),
            &self.slots.to_le_bytes(),
            &self.slot_size.to_le_bytes(),
            &self.boots.to_le_bytes(),
            &self.reset_cause.to_le_bytes(),
            &self.clock_base.to_le_bytes(),
            &self.clock_hz.to_le_bytes(),
        ];
        let mut at = 0;
        for part in parts {
            bytes[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        bytes
    }

    fn sealed(mut self) -> Self {
        self.checksum = crc32(&self.fields());
        self
    }

    /// Whether this header describes a ledger this build can re-attach for `slots` slots of
    /// `slot_size` bytes.
    pub fn check(&self, slots: u32, slot_size: u32) -> Result<(), Mismatch> {
        if self.magic != MAGIC {
            return Err(Mismatch::Magic);
        }
        if self.version != VERSION {
            return Err(Mismatch::Version {
                found: self.version,
            });
        }
        let expected = crc32(&self.fields());
        if self.checksum != expected {
            return Err(Mismatch::Checksum {
                found: self.checksum,
                expected,
            });
        }
        if self.slots != slots || self.slot_size != slot_size {
            return Err(Mismatch::Geometry {
                slots: self.slots,
                slot_size: self.slot_size,
            });
        }
        Ok(())
    }

    /// Re-attaches the ledger after a recovery: checks it, counts the boot. Returns the boots.
    pub fn attach(&mut self, slots: u32, slot_size: u32) -> Result<u32, Mismatch> {
        self.check(slots, slot_size)?;
        self.boots = self.boots.saturating_add(1);
        *self = self.sealed();
        Ok(self.boots)
    }

    /// Notes that the machine is about to be reset in full, and why.
    pub fn set_reset_cause(&mut self, cause: ResetCause) {
        self.reset_cause = cause as u32;
        *self = self.sealed();
    }

    /// Why the run before this cold boot ended in a full reset, if a valid ledger says so.
    pub fn last_reset_cause(&self) -> Option<ResetCause> {
        if self.magic != MAGIC || self.version != VERSION || self.checksum != crc32(&self.fields())
        {
            return None;
        }
        ResetCause::from_raw(self.reset_cause).filter(|&c| c != ResetCause::None)
    }

    pub fn boots(&self) -> u32 {
        self.boots
    }

    pub fn clock(&self) -> (u64, u64) {
        (self.clock_base, self.clock_hz)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_formatted_header_checks_against_its_own_geometry_only() {
        let h = Header::formatted(2, 512, 7, 4_000_000);
        assert_eq!(h.check(2, 512), Ok(()));
        assert_eq!(h.boots(), 1);
        assert_eq!(h.clock(), (7, 4_000_000));
        assert_eq!(
            h.check(4, 512),
            Err(Mismatch::Geometry {
                slots: 2,
                slot_size: 512
            })
        );
    }

    #[test]
    fn attaching_counts_boots_and_keeps_the_header_valid() {
        let mut h = Header::formatted(2, 512, 0, 1);
        assert_eq!(h.attach(2, 512), Ok(2));
        assert_eq!(h.attach(2, 512), Ok(3));
        assert_eq!(h.check(2, 512), Ok(()));
    }

    #[test]
    fn cold_or_foreign_memory_is_refused() {
        let zero = Header {
            magic: 0,
            version: 0,
            slots: 0,
            slot_size: 0,
            boots: 0,
            reset_cause: 0,
            clock_base: 0,
            clock_hz: 0,
            checksum: 0,
        };
        assert_eq!(zero.check(0, 0), Err(Mismatch::Magic));
        let old = Header {
            version: VERSION + 1,
            ..Header::formatted(2, 512, 0, 1)
        };
        assert_eq!(
            old.check(2, 512),
            Err(Mismatch::Version { found: VERSION + 1 })
        );
    }

    #[test]
    fn a_flipped_bit_in_any_field_is_caught_by_the_checksum() {
        let good = Header::formatted(2, 512, 0x1234, 4_000_000);
        let mut h = good;
        h.boots ^= 1 << 3;
        assert!(matches!(h.check(2, 512), Err(Mismatch::Checksum { .. })));
        let mut h = good;
        h.clock_base ^= 1 << 40;
        assert!(matches!(h.check(2, 512), Err(Mismatch::Checksum { .. })));
        let mut h = good;
        let mut attached = h;
        assert_eq!(attached.attach(2, 512), Ok(2));
        h.checksum ^= 1;
        assert!(h.attach(2, 512).is_err());
    }

    #[test]
    fn the_reset_cause_survives_until_the_next_format() {
        let mut h = Header::formatted(2, 512, 0, 1);
        assert_eq!(h.last_reset_cause(), None);
        h.set_reset_cause(ResetCause::PristineCorrupt);
        assert_eq!(h.last_reset_cause(), Some(ResetCause::PristineCorrupt));
        assert_eq!(Header::formatted(2, 512, 0, 1).last_reset_cause(), None);
    }
}
