//! The CPUID a partition sees: the physical CPU's answers with virtualization hidden, features
//! the partition cannot use removed, and a hypervisor leaf naming Tandem.

use crate::hypercall::ABI_VERSION;

pub const HYPERVISOR_LEAF: u32 = 0x4000_0000;
/// `CPUID.40000000h:EBX,ECX,EDX`.
pub const SIGNATURE: [u8; 12] = *b"TandemHV\0\0\0\0";

mod leaf1 {
    pub const ECX_MONITOR: u32 = 1 << 3;
    pub const ECX_VMX: u32 = 1 << 5;
    pub const ECX_SMX: u32 = 1 << 6;
    pub const ECX_PDCM: u32 = 1 << 15;
    pub const ECX_X2APIC: u32 = 1 << 21;
    pub const ECX_TSC_DEADLINE: u32 = 1 << 24;
    pub const ECX_XSAVE: u32 = 1 << 26;
    pub const ECX_OSXSAVE: u32 = 1 << 27;
    pub const ECX_AVX: u32 = 1 << 28;
    pub const ECX_HYPERVISOR: u32 = 1 << 31;
    pub const EDX_APIC: u32 = 1 << 9;
}

mod leaf7 {
    pub const EBX_XSAVE_STATE: u32 =
        1 << 5 | 1 << 16 | 1 << 17 | 1 << 21 | 1 << 26 | 1 << 27 | 1 << 28 | 1 << 30 | 1 << 31;
    /// AVX-512 VBMI, VBMI2, VNNI, BITALG, VPOPCNTDQ.
    pub const ECX_XSAVE_STATE: u32 = 1 << 1 | 1 << 6 | 1 << 11 | 1 << 12 | 1 << 14;
    pub const EDX_XSAVE_STATE: u32 = 1 << 22 | 1 << 24 | 1 << 25;
    /// Intel PT: trace hardware whose MSRs raise #GP in a partition.
    pub const EBX_PROCESSOR_TRACE: u32 = 1 << 25;
    /// WAITPKG: without the "enable user wait and pause" control, TPAUSE, UMONITOR and UMWAIT
    /// raise #UD (SDM Vol. 3C, 26.6.2), and Tandem does not set it.
    pub const ECX_WAITPKG: u32 = 1 << 5;
    /// IBRS/IBPB, STIBP, L1D_FLUSH, ARCH_CAPABILITIES, CORE_CAPABILITIES, SSBD: each announces an
    /// MSR (SPEC_CTRL, PRED_CMD, FLUSH_CMD, ARCH_CAPABILITIES, CORE_CAPABILITIES) that raises #GP
    /// in a partition (`devices::msr`), so none is announced.
    pub const EDX_MSR_FEATURES: u32 = 1 << 26 | 1 << 27 | 1 << 28 | 1 << 29 | 1 << 30 | 1 << 31;
}

mod ext8 {
    /// AMD's IBPB, IBRS, STIBP, SSBD and VIRT_SSBD: the same SPEC_CTRL family of MSRs.
    pub const EBX_MSR_FEATURES: u32 = 1 << 12 | 1 << 14 | 1 << 15 | 1 << 24 | 1 << 25;
}

fn sig_word(i: usize) -> u32 {
    u32::from_le_bytes([
        SIGNATURE[4 * i],
        SIGNATURE[4 * i + 1],
        SIGNATURE[4 * i + 2],
        SIGNATURE[4 * i + 3],
    ])
}

/// Filters the host's `[eax, ebx, ecx, edx]` for `leaf`/`subleaf` as seen by vCPU `vcpu`.
pub fn filter(leaf: u32, subleaf: u32, host: [u32; 4], vcpu: u32) -> [u32; 4] {
    let [eax, ebx, ecx, edx] = host;
    match leaf {
        1 => {
            // No LAPIC, MONITOR/MWAIT or VMX is given to partitions (SDM Vol. 2A, CPUID leaf
            // 01H), and no XSAVE-managed state: XSETBV is refused, so XSAVE and AVX are hidden.
            let ecx = (ecx
                & !(leaf1::ECX_MONITOR
                    | leaf1::ECX_VMX
                    | leaf1::ECX_SMX
                    | leaf1::ECX_PDCM
                    | leaf1::ECX_X2APIC
                    | leaf1::ECX_TSC_DEADLINE
                    | leaf1::ECX_XSAVE
                    | leaf1::ECX_OSXSAVE
                    | leaf1::ECX_AVX))
                | leaf1::ECX_HYPERVISOR;
            let ebx = (ebx & 0x00ff_ffff) | (vcpu << 24);
            [eax, ebx, ecx, edx & !leaf1::EDX_APIC]
        }
        // MONITOR/MWAIT parameters, performance monitoring and XSAVE state: not offered.
        5 | 0xa | 0xd => [0; 4],
        // Structured extended features: nothing that needs XSAVE-managed state (AVX2, AVX-512,
        // AMX live in EBX[5,16,17,21,26-28,30,31] and EDX[22,24,25]), and nothing the partition
        // would fault on using.
        7 if subleaf == 0 => [
            eax,
            ebx & !(leaf7::EBX_XSAVE_STATE | leaf7::EBX_PROCESSOR_TRACE),
            ecx & !(leaf7::ECX_XSAVE_STATE | leaf7::ECX_WAITPKG),
            edx & !(leaf7::EDX_XSAVE_STATE | leaf7::EDX_MSR_FEATURES),
        ],
        0x8000_0008 => [eax, ebx & !ext8::EBX_MSR_FEATURES, ecx, edx],
        0xb | 0x1f => [eax, ebx, ecx, vcpu],
        HYPERVISOR_LEAF => [HYPERVISOR_LEAF + 1, sig_word(0), sig_word(1), sig_word(2)],
        0x4000_0001 => [ABI_VERSION as u32, 0, 0, 0],
        0x4000_0002..=0x4fff_ffff => [0; 4],
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_vmx_and_announces_a_hypervisor() {
        let [_, ebx, ecx, edx] = filter(1, 0, [0, 0x0500_0000, u32::MAX, u32::MAX], 1);
        assert_eq!(ecx & leaf1::ECX_VMX, 0);
        assert_ne!(ecx & leaf1::ECX_HYPERVISOR, 0);
        assert_eq!(edx & leaf1::EDX_APIC, 0);
        assert_eq!(ebx >> 24, 1, "APIC id is the vCPU index");
    }

    #[test]
    fn hypervisor_leaf_names_tandem() {
        let [max, b, c, d] = filter(HYPERVISOR_LEAF, 0, [0; 4], 0);
        assert_eq!(max, HYPERVISOR_LEAF + 1);
        let mut sig = Vec::new();
        for w in [b, c, d] {
            sig.extend_from_slice(&w.to_le_bytes());
        }
        assert_eq!(&sig[..8], b"TandemHV");
        assert_eq!(filter(0x4000_0001, 0, [0; 4], 0)[0], ABI_VERSION as u32);
    }

    #[test]
    fn xsave_managed_features_are_hidden() {
        let [_, _, ecx, _] = filter(1, 0, [0, 0, u32::MAX, u32::MAX], 0);
        assert_eq!(
            ecx & (leaf1::ECX_XSAVE | leaf1::ECX_OSXSAVE | leaf1::ECX_AVX),
            0
        );
        assert_eq!(filter(0xd, 0, [7, 0x340, 0x340, 0], 0), [0; 4]);
        let [_, ebx, _, _] = filter(7, 0, [0, u32::MAX, 0, 0], 0);
        assert_eq!(ebx & (1 << 5), 0, "AVX2 hidden");
        assert_ne!(ebx & 1, 0, "FSGSBASE still offered");
        assert_eq!(
            filter(7, 1, [1, 2, 3, 4], 0),
            [1, 2, 3, 4],
            "other subleaves untouched"
        );
    }

    #[test]
    fn no_msr_that_faults_is_announced() {
        let [_, _, _, edx] = filter(7, 0, [0, 0, 0, u32::MAX], 0);
        assert_eq!(
            edx & (1 << 26 | 1 << 29),
            0,
            "IBRS and ARCH_CAPABILITIES hidden"
        );
        assert!(
            crate::devices::msr::read(0x48).is_none() && crate::devices::msr::read(0x10a).is_none()
        );
        let [_, ebx, _, _] = filter(0x8000_0008, 0, [0, u32::MAX, 0, 0], 0);
        assert_eq!(ebx & (1 << 14), 0, "AMD IBRS hidden");
        let [_, _, ecx, _] = filter(7, 0, [0, 0, u32::MAX, 0], 0);
        assert_eq!(ecx & leaf7::ECX_WAITPKG, 0);
    }

    #[test]
    fn other_leaves_pass_through() {
        assert_eq!(filter(0, 0, [0xd, 1, 2, 3], 0), [0xd, 1, 2, 3]);
    }
}
