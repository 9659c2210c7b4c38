//! Typed addresses: a guest-physical address can never be passed where a host-physical one is
//! expected, and vice versa.

use core::fmt;
use core::ops::Add;

macro_rules! address_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[derive(serde::Serialize, serde::Deserialize)]
        #[repr(transparent)]
        pub struct $name(u64);

        impl $name {
            pub const fn new(raw: u64) -> Self {
                Self(raw)
            }
            pub const fn raw(self) -> u64 {
                self.0
            }
            /// The offset of `self` from `base`, if `self` is not below it.
            pub const fn offset_from(self, base: Self) -> Option<u64> {
                self.0.checked_sub(base.0)
            }
            pub const fn is_aligned(self, align: u64) -> bool {
                self.0 % align == 0
            }
            pub const fn checked_add(self, bytes: u64) -> Option<Self> {
                match self.0.checked_add(bytes) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }
        }

        impl Add<u64> for $name {
            type Output = Self;
            fn add(self, bytes: u64) -> Self {
                Self(self.0 + bytes)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "({:#x})"), self.0)
            }
        }

        #[cfg(feature = "defmt")]
        impl defmt::Format for $name {
            fn format(&self, f: defmt::Formatter) {
                defmt::write!(f, "{=u64:#x}", self.0)
            }
        }
    };
}

address_type!(
    /// An address in a partition's guest-physical space (what EPT / stage 2 translates).
    GuestPhysAddr,
    "GPA"
);
address_type!(
    /// An address in the machine's physical space.
    HostPhysAddr,
    "HPA"
);
address_type!(
    /// An address in the hypervisor's own virtual space.
    HostVirtAddr,
    "HVA"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_and_alignment() {
        let base = GuestPhysAddr::new(0x1000);
        assert_eq!(GuestPhysAddr::new(0x1800).offset_from(base), Some(0x800));
        assert_eq!(GuestPhysAddr::new(0x800).offset_from(base), None);
        assert!(base.is_aligned(0x1000));
        assert!(!GuestPhysAddr::new(0x1800).is_aligned(0x1000));
        assert_eq!(HostPhysAddr::new(u64::MAX).checked_add(1), None);
    }
}
