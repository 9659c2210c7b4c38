//! Why a page-table operation was refused or could not finish.

use core::fmt;

use super::Attrs;
use crate::addr::{GuestPhysAddr, HostPhysAddr};

/// Which argument of an operation a [`PagingError::Misaligned`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Operand {
    Gpa,
    Hpa,
    Size,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PagingError {
    /// An address or a size is not a multiple of the page size.
    Misaligned { what: Operand, value: u64 },
    /// The guest range ends beyond what the root table reaches.
    GpaOutOfRange { gpa: GuestPhysAddr, size: u64 },
    /// The host range ends beyond what an entry can hold.
    HpaOutOfRange { hpa: HostPhysAddr, size: u64 },
    /// `map` met a page at `gpa` that is already mapped elsewhere or with other attributes.
    Overlaps { gpa: GuestPhysAddr },
    /// `remap` met a page at `gpa` that is not mapped.
    NotMapped { gpa: GuestPhysAddr },
    /// The format cannot express these attributes (EPT: write or execute without read).
    Unsupported { attrs: Attrs },
    /// No table frame was left for the table that maps `gpa`.
    OutOfFrames { gpa: GuestPhysAddr },
}

impl fmt::Display for PagingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Misaligned { what, value } => {
                write!(f, "{what:?} {value:#x} is not page-aligned")
            }
            Self::GpaOutOfRange { gpa, size } => {
                write!(f, "{size:#x} bytes at {gpa:?} end beyond the tables' reach")
            }
            Self::HpaOutOfRange { hpa, size } => {
                write!(
                    f,
                    "{size:#x} bytes at {hpa:?} end beyond what an entry holds"
                )
            }
            Self::Overlaps { gpa } => write!(f, "{gpa:?} is already mapped differently"),
            Self::NotMapped { gpa } => write!(f, "{gpa:?} is not mapped"),
            Self::Unsupported { attrs } => write!(f, "the format cannot express {attrs:?}"),
            Self::OutOfFrames { gpa } => write!(f, "no table frame left to map {gpa:?}"),
        }
    }
}
