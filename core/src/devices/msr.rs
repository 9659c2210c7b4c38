//! The model-specific registers a partition may touch when the access exits.
//!
//! The backend passes a small set of guest-owned MSRs through without exits (segment bases,
//! SYSCALL/SYSENTER, EFER and PAT, which VT-x switches). Everything else exits here: a few are
//! emulated with fixed values, the rest raise #GP like an MSR the CPU does not implement.

pub const IA32_APIC_BASE: u32 = 0x1b;
pub const IA32_BIOS_SIGN_ID: u32 = 0x8b;
pub const IA32_MTRRCAP: u32 = 0xfe;
pub const IA32_MISC_ENABLE: u32 = 0x1a0;
pub const IA32_MTRR_DEF_TYPE: u32 = 0x2ff;

/// xAPIC base with the BSP flag and the global enable clear: partitions have no local APIC.
const APIC_BASE_VALUE: u64 = 0xfee0_0000 | 1 << 8;
/// Fast strings enabled, as firmware leaves it.
const MISC_ENABLE_VALUE: u64 = 1;
/// MTRRs disabled, default type write-back.
const MTRR_DEF_TYPE_VALUE: u64 = 6;

/// The value a read of `msr` returns, or `None` for #GP.
pub fn read(msr: u32) -> Option<u64> {
    match msr {
        IA32_APIC_BASE => Some(APIC_BASE_VALUE),
        IA32_BIOS_SIGN_ID | IA32_MTRRCAP => Some(0),
        IA32_MISC_ENABLE => Some(MISC_ENABLE_VALUE),
        IA32_MTRR_DEF_TYPE => Some(MTRR_DEF_TYPE_VALUE),
        _ => None,
    }
}

/// Whether a write of `value` to `msr` is accepted (and dropped); `false` means #GP.
pub fn write(msr: u32, value: u64) -> bool {
    match msr {
        // Writing 0 asks the CPU to load its microcode revision; harmless to accept.
        IA32_BIOS_SIGN_ID => true,
        // Rewriting the value read back is accepted; changing it is not.
        IA32_APIC_BASE | IA32_MISC_ENABLE | IA32_MTRR_DEF_TYPE => read(msr) == Some(value),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_msrs_fault() {
        assert_eq!(read(0xc001_0000), None);
        assert!(!write(0x10, 0));
    }

    #[test]
    fn apic_base_reads_disabled_and_cannot_be_enabled() {
        let v = read(IA32_APIC_BASE).unwrap();
        assert_eq!(v & (1 << 11), 0);
        assert!(write(IA32_APIC_BASE, v));
        assert!(!write(IA32_APIC_BASE, v | 1 << 11));
    }
}
