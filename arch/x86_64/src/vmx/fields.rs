//! Tandem's one table of VT-x constants: the VMCS fields it uses (SDM Vol. 3D, Appendix B
//! "Field Encoding in VMCS"), the VMX capability MSRs (Appendix A) and the VM-execution, VM-exit
//! and VM-entry control bits (SDM Vol. 3C, 26.6-26.8). The `x86_64` crate has nothing for VMX.

use bitflags::bitflags;
use x86_64::registers::model_specific::Msr;

/// The encoding of one VMCS field, the operand of VMREAD and VMWRITE (SDM Vol. 3D, B.1-B.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmcsField(u32);

impl VmcsField {
    pub const fn encoding(self) -> u32 {
        self.0
    }

    /// The field `n` places after this one in a run of same-width fields (the encodings of, for
    /// instance, ES..GS selectors step by 2).
    pub const fn nth(self, n: u32) -> Self {
        Self(self.0 + 2 * n)
    }
}

impl defmt::Format for VmcsField {
    fn format(&self, f: defmt::Formatter) {
        defmt::write!(f, "VMCS field {=u32:#06x}", self.0);
    }
}

/// VM-execution, VM-exit and VM-entry control fields (SDM Vol. 3D, B.1.1, B.2.1, B.3.1).
pub mod ctrl {
    use super::VmcsField as F;
    pub const VPID: F = F(0x0000);
    pub const IO_BITMAP_A: F = F(0x2000);
    pub const IO_BITMAP_B: F = F(0x2002);
    pub const MSR_BITMAP: F = F(0x2004);
    pub const VIRTUAL_APIC_PAGE: F = F(0x2012);
    pub const EPT_POINTER: F = F(0x201a);
    pub const PIN_BASED: F = F(0x4000);
    pub const PROC_BASED: F = F(0x4002);
    pub const EXCEPTION_BITMAP: F = F(0x4004);
    pub const CR3_TARGET_COUNT: F = F(0x400a);
    pub const EXIT_CONTROLS: F = F(0x400c);
    pub const ENTRY_CONTROLS: F = F(0x4012);
    pub const ENTRY_INTERRUPTION_INFO: F = F(0x4016);
    pub const ENTRY_EXCEPTION_ERROR: F = F(0x4018);
    pub const ENTRY_INSTRUCTION_LEN: F = F(0x401a);
    pub const TPR_THRESHOLD: F = F(0x401c);
    pub const PROC_BASED2: F = F(0x401e);
    pub const CR0_MASK: F = F(0x6000);
    pub const CR4_MASK: F = F(0x6002);
    pub const CR0_SHADOW: F = F(0x6004);
    pub const CR4_SHADOW: F = F(0x6006);
}

/// Read-only data fields: what the last exit or failed instruction reports (SDM Vol. 3D, B.2.2,
/// B.3.2, B.4.2).
pub mod ro {
    use super::VmcsField as F;
    pub const GUEST_PHYSICAL_ADDRESS: F = F(0x2400);
    pub const INSTRUCTION_ERROR: F = F(0x4400);
    pub const EXIT_REASON: F = F(0x4402);
    pub const EXIT_INTERRUPTION_INFO: F = F(0x4404);
    pub const EXIT_INTERRUPTION_ERROR: F = F(0x4406);
    pub const IDT_VECTORING_INFO: F = F(0x4408);
    pub const IDT_VECTORING_ERROR: F = F(0x440a);
    pub const EXIT_INSTRUCTION_LEN: F = F(0x440c);
    pub const EXIT_QUALIFICATION: F = F(0x6400);
    pub const GUEST_LINEAR_ADDRESS: F = F(0x640a);
}

/// Guest-state fields (SDM Vol. 3D, B.1.2, B.2.3, B.3.3, B.4.3). Segment fields run ES, CS, SS,
/// DS, FS, GS (see [`VmcsField::nth`]).
pub mod guest {
    use super::VmcsField as F;
    pub const ES_SELECTOR: F = F(0x0800);
    pub const LDTR_SELECTOR: F = F(0x080c);
    pub const TR_SELECTOR: F = F(0x080e);
    pub const LINK_POINTER: F = F(0x2800);
    pub const IA32_DEBUGCTL: F = F(0x2802);
    pub const IA32_PAT: F = F(0x2804);
    pub const IA32_EFER: F = F(0x2806);
    /// PDPTE0..PDPTE3: the guest's PAE page-directory pointers, used with EPT in PAE paging.
    pub const PDPTE0: F = F(0x280a);
    pub const ES_LIMIT: F = F(0x4800);
    pub const LDTR_LIMIT: F = F(0x480c);
    pub const TR_LIMIT: F = F(0x480e);
    pub const GDTR_LIMIT: F = F(0x4810);
    pub const IDTR_LIMIT: F = F(0x4812);
    pub const ES_ACCESS: F = F(0x4814);
    pub const SS_ACCESS: F = F(0x4818);
    pub const LDTR_ACCESS: F = F(0x4820);
    pub const TR_ACCESS: F = F(0x4822);
    pub const INTERRUPTIBILITY: F = F(0x4824);
    pub const ACTIVITY_STATE: F = F(0x4826);
    pub const SYSENTER_CS: F = F(0x482a);
    pub const PREEMPTION_TIMER: F = F(0x482e);
    pub const CR0: F = F(0x6800);
    pub const CR3: F = F(0x6802);
    pub const CR4: F = F(0x6804);
    pub const ES_BASE: F = F(0x6806);
    pub const LDTR_BASE: F = F(0x6812);
    pub const TR_BASE: F = F(0x6814);
    pub const GDTR_BASE: F = F(0x6816);
    pub const IDTR_BASE: F = F(0x6818);
    pub const DR7: F = F(0x681a);
    pub const RSP: F = F(0x681c);
    pub const RIP: F = F(0x681e);
    pub const RFLAGS: F = F(0x6820);
    pub const PENDING_DEBUG: F = F(0x6822);
    pub const SYSENTER_ESP: F = F(0x6824);
    pub const SYSENTER_EIP: F = F(0x6826);
}

/// Host-state fields: what a VM exit loads (SDM Vol. 3D, B.1.3, B.2.4, B.3.4, B.4.4).
pub mod host {
    use super::VmcsField as F;
    pub const ES_SELECTOR: F = F(0x0c00);
    pub const CS_SELECTOR: F = F(0x0c02);
    pub const SS_SELECTOR: F = F(0x0c04);
    pub const DS_SELECTOR: F = F(0x0c06);
    pub const FS_SELECTOR: F = F(0x0c08);
    pub const GS_SELECTOR: F = F(0x0c0a);
    pub const TR_SELECTOR: F = F(0x0c0c);
    pub const IA32_PAT: F = F(0x2c00);
    pub const IA32_EFER: F = F(0x2c02);
    pub const SYSENTER_CS: F = F(0x4c00);
    pub const CR0: F = F(0x6c00);
    pub const CR3: F = F(0x6c02);
    pub const CR4: F = F(0x6c04);
    pub const FS_BASE: F = F(0x6c06);
    pub const GS_BASE: F = F(0x6c08);
    pub const TR_BASE: F = F(0x6c0a);
    pub const GDTR_BASE: F = F(0x6c0c);
    pub const IDTR_BASE: F = F(0x6c0e);
    pub const SYSENTER_ESP: F = F(0x6c10);
    pub const SYSENTER_EIP: F = F(0x6c12);
    pub const RSP: F = F(0x6c14);
    pub const RIP: F = F(0x6c16);
}

/// The MSRs that say what this CPU's VMX offers (SDM Vol. 3D, Appendix A), by name in reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
#[repr(u32)]
pub enum CapabilityMsr {
    Basic = 0x480,
    PinbasedCtls = 0x481,
    ProcbasedCtls = 0x482,
    ExitCtls = 0x483,
    EntryCtls = 0x484,
    Misc = 0x485,
    Cr0Fixed0 = 0x486,
    Cr0Fixed1 = 0x487,
    Cr4Fixed0 = 0x488,
    Cr4Fixed1 = 0x489,
    ProcbasedCtls2 = 0x48b,
    EptVpidCap = 0x48c,
    TruePinbasedCtls = 0x48d,
    TrueProcbasedCtls = 0x48e,
    TrueExitCtls = 0x48f,
    TrueEntryCtls = 0x490,
}

impl CapabilityMsr {
    pub fn read(self) -> u64 {
        // SAFETY: the capability MSRs exist whenever CPUID.1:ECX.VMX is set, which `caps::probe`
        // checks before anything reads them; reading them has no side effect.
        unsafe { Msr::new(self as u32).read() }
    }
}

/// IA32_FEATURE_CONTROL (SDM Vol. 3C, 25.7): firmware's permission to use VMX.
pub const IA32_FEATURE_CONTROL: u32 = 0x3a;

bitflags! {
    /// IA32_FEATURE_CONTROL bits Tandem reads or sets.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct FeatureControl: u64 {
        const LOCKED = 1 << 0;
        const VMX_OUTSIDE_SMX = 1 << 2;
        const _ = !0;
    }

    /// IA32_VMX_BASIC bits Tandem reads (SDM Vol. 3D, A.1).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct VmxBasic: u64 {
        /// The TRUE_*_CTLS MSRs report which default-1 controls may be cleared.
        const TRUE_CONTROLS = 1 << 55;
        const _ = !0;
    }

    /// Pin-based VM-execution controls (SDM Vol. 3C, Table 26-5).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct PinControls: u32 {
        const EXTERNAL_INTERRUPT_EXITING = 1 << 0;
        const NMI_EXITING = 1 << 3;
        const PREEMPTION_TIMER = 1 << 6;
        const _ = !0;
    }

    /// Primary processor-based VM-execution controls (SDM Vol. 3C, Table 26-6).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct ProcControls: u32 {
        const INTERRUPT_WINDOW_EXITING = 1 << 2;
        const HLT_EXITING = 1 << 7;
        /// MOV to/from CR8 reads and writes the virtual-APIC page's TPR, not the CPU's.
        const USE_TPR_SHADOW = 1 << 21;
        const MWAIT_EXITING = 1 << 10;
        const RDPMC_EXITING = 1 << 11;
        /// RDTSC, and RDTSCP where enabled, exit (SDM Vol. 3C, 26.6.2).
        const RDTSC_EXITING = 1 << 12;
        const USE_IO_BITMAPS = 1 << 25;
        const USE_MSR_BITMAPS = 1 << 28;
        const MONITOR_EXITING = 1 << 29;
        /// PAUSE exits (SDM Vol. 3C, 26.6.2).
        const PAUSE_EXITING = 1 << 30;
        const SECONDARY = 1 << 31;
        const _ = !0;
    }

    /// Secondary processor-based VM-execution controls (SDM Vol. 3C, Table 26-7).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct ProcControls2: u32 {
        const ENABLE_EPT = 1 << 1;
        /// Without it RDTSCP and RDPID raise #UD in the guest (SDM Vol. 3C, 26.6.2).
        const ENABLE_RDTSCP = 1 << 3;
        const ENABLE_VPID = 1 << 5;
        const WBINVD_EXITING = 1 << 6;
        const UNRESTRICTED_GUEST = 1 << 7;
        const RDRAND_EXITING = 1 << 11;
        /// Without it INVPCID raises #UD in the guest (SDM Vol. 3C, 26.6.2).
        const ENABLE_INVPCID = 1 << 12;
        const RDSEED_EXITING = 1 << 16;
        const _ = !0;
    }

    /// Primary VM-exit controls (SDM Vol. 3C, Table 26-14).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct ExitControls: u32 {
        const SAVE_DEBUG_CONTROLS = 1 << 2;
        const HOST_ADDRESS_SPACE_SIZE = 1 << 9;
        const SAVE_PAT = 1 << 18;
        const LOAD_PAT = 1 << 19;
        const SAVE_EFER = 1 << 20;
        const LOAD_EFER = 1 << 21;
        const _ = !0;
    }

    /// VM-entry controls (SDM Vol. 3C, Table 26-17).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct EntryControls: u32 {
        const LOAD_DEBUG_CONTROLS = 1 << 2;
        const IA32E_GUEST = 1 << 9;
        const LOAD_PAT = 1 << 14;
        const LOAD_EFER = 1 << 15;
        const _ = !0;
    }

    /// IA32_VMX_EPT_VPID_CAP bits Tandem needs (SDM Vol. 3D, A.10).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct EptVpidCap: u64 {
        const WALK_LENGTH_4 = 1 << 6;
        const MEMORY_TYPE_WB = 1 << 14;
        const PAGE_2M = 1 << 16;
        const INVEPT = 1 << 20;
        const INVEPT_ALL_CONTEXT = 1 << 26;
        const INVVPID = 1 << 32;
        const INVVPID_ALL_CONTEXT = 1 << 42;
        const _ = !0;
    }
}

/// IA32_VMX_MISC bits 4:0: the preemption timer counts down once every 2^rate TSC ticks
/// (SDM Vol. 3D, A.6).
pub const MISC_PREEMPTION_RATE: u64 = 0x1f;
/// IA32_VMX_BASIC bits 30:0: the VMCS revision identifier (SDM Vol. 3D, A.1).
pub const BASIC_REVISION: u64 = 0x7fff_ffff;
