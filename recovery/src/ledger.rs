//! The ledger header. The ledger itself is an array of per-CPU slots of plain `#[repr(C)]` data
//! (vCPU registers, device models, exit counters) that a backend places in memory no boot path
//! clears; the header in front of it says what layout the slots have and how often the
//! hypervisor has booted over it.

pub const MAGIC: u64 = u64::from_le_bytes(*b"TNDMLDGR");
/// Bumped whenever the layout of the header or of any slot type changes.
pub const VERSION: u32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Header {
    magic: u64,
    version: u32,
    slots: u32,
    slot_size: u32,
    /// Boots over this ledger: 1 after the cold boot that formatted it.
    boots: u32,
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
}

impl Header {
    /// The header of a freshly formatted ledger of `slots` slots of `slot_size` bytes.
    pub const fn formatted(slots: u32, slot_size: u32) -> Self {
        Self {
            magic: MAGIC,
            version: VERSION,
            slots,
            slot_size,
            boots: 1,
        }
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
        if self.slots != slots || self.slot_size != slot_size {
            return Err(Mismatch::Geometry {
                slots: self.slots,
                slot_size: self.slot_size,
            });
        }
        Ok(())
    }

    pub fn boots(&self) -> u32 {
        self.boots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_formatted_header_checks_against_its_own_geometry_only() {
        let h = Header::formatted(2, 512);
        assert_eq!(h.check(2, 512), Ok(()));
        assert_eq!(h.boots(), 1);
        assert_eq!(
            h.check(4, 512),
            Err(Mismatch::Geometry {
                slots: 2,
                slot_size: 512
            })
        );
    }

    #[test]
    fn cold_or_foreign_memory_is_refused() {
        let zero = Header {
            magic: 0,
            version: 0,
            slots: 0,
            slot_size: 0,
            boots: 0,
        };
        assert_eq!(zero.check(0, 0), Err(Mismatch::Magic));
        let old = Header {
            version: VERSION + 1,
            ..Header::formatted(2, 512)
        };
        assert_eq!(
            old.check(2, 512),
            Err(Mismatch::Version { found: VERSION + 1 })
        );
    }
}
