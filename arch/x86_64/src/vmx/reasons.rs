//! The numbers VT-x reports, with their SDM names for the log: basic exit reasons (SDM Vol. 3D,
//! Appendix C) and VM-instruction error numbers (SDM Vol. 3C, 31.4).

/// A basic exit reason: bits 15:0 of the exit-reason field (SDM Vol. 3C, 28.2.1). A newtype over
/// the raw number rather than an enum, so the exit path compares it without a conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitReason(pub u16);

impl ExitReason {
    pub const EXCEPTION_OR_NMI: Self = Self(0);
    pub const EXTERNAL_INTERRUPT: Self = Self(1);
    pub const TRIPLE_FAULT: Self = Self(2);
    pub const INTERRUPT_WINDOW: Self = Self(7);
    pub const CPUID: Self = Self(10);
    pub const GETSEC: Self = Self(11);
    pub const HLT: Self = Self(12);
    pub const INVD: Self = Self(13);
    pub const VMCALL: Self = Self(18);
    pub const VMCLEAR: Self = Self(19);
    pub const VMLAUNCH: Self = Self(20);
    pub const VMPTRLD: Self = Self(21);
    pub const VMPTRST: Self = Self(22);
    pub const VMREAD: Self = Self(23);
    pub const VMRESUME: Self = Self(24);
    pub const VMWRITE: Self = Self(25);
    pub const VMXOFF: Self = Self(26);
    pub const VMXON: Self = Self(27);
    pub const CR_ACCESS: Self = Self(28);
    pub const IO_INSTRUCTION: Self = Self(30);
    pub const RDTSC: Self = Self(16);
    pub const RDMSR: Self = Self(31);
    pub const WRMSR: Self = Self(32);
    pub const PAUSE: Self = Self(40);
    pub const EPT_VIOLATION: Self = Self(48);
    pub const INVEPT: Self = Self(50);
    pub const RDTSCP: Self = Self(51);
    pub const PREEMPTION_TIMER: Self = Self(52);
    pub const INVVPID: Self = Self(53);
    pub const WBINVD: Self = Self(54);
    pub const XSETBV: Self = Self(55);
    pub const RDRAND: Self = Self(57);
    pub const RDSEED: Self = Self(61);

    /// The basic reason of a raw exit-reason field.
    #[inline]
    pub fn basic(field: u64) -> Self {
        Self(field as u16)
    }

    /// The name SDM Vol. 3D, Table C-1 gives this reason.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "exception or NMI",
            1 => "external interrupt",
            2 => "triple fault",
            3 => "INIT signal",
            4 => "start-up IPI",
            5 => "I/O SMI",
            6 => "other SMI",
            7 => "interrupt window",
            8 => "NMI window",
            9 => "task switch",
            10 => "CPUID",
            11 => "GETSEC",
            12 => "HLT",
            13 => "INVD",
            14 => "INVLPG",
            15 => "RDPMC",
            16 => "RDTSC",
            17 => "RSM",
            18 => "VMCALL",
            19 => "VMCLEAR",
            20 => "VMLAUNCH",
            21 => "VMPTRLD",
            22 => "VMPTRST",
            23 => "VMREAD",
            24 => "VMRESUME",
            25 => "VMWRITE",
            26 => "VMXOFF",
            27 => "VMXON",
            28 => "control-register access",
            29 => "MOV DR",
            30 => "I/O instruction",
            31 => "RDMSR",
            32 => "WRMSR",
            33 => "VM-entry failure due to invalid guest state",
            34 => "VM-entry failure due to MSR loading",
            36 => "MWAIT",
            37 => "monitor trap flag",
            39 => "MONITOR",
            40 => "PAUSE",
            41 => "VM-entry failure due to machine-check event",
            43 => "TPR below threshold",
            44 => "APIC access",
            45 => "virtualized EOI",
            46 => "access to GDTR or IDTR",
            47 => "access to LDTR or TR",
            48 => "EPT violation",
            49 => "EPT misconfiguration",
            50 => "INVEPT",
            51 => "RDTSCP",
            52 => "VMX-preemption timer expired",
            53 => "INVVPID",
            54 => "WBINVD or WBNOINVD",
            55 => "XSETBV",
            56 => "APIC write",
            57 => "RDRAND",
            58 => "INVPCID",
            59 => "VMFUNC",
            60 => "ENCLS",
            61 => "RDSEED",
            62 => "page-modification log full",
            63 => "XSAVES",
            64 => "XRSTORS",
            65 => "PCONFIG",
            66 => "SPP-related event",
            67 => "UMWAIT",
            68 => "TPAUSE",
            69 => "LOADIWKEY",
            _ => "unknown exit reason",
        }
    }
}

impl defmt::Format for ExitReason {
    fn format(&self, f: defmt::Formatter) {
        defmt::write!(f, "{=str} ({=u16})", self.name(), self.0);
    }
}

/// A VM-instruction error number, read from the VMCS after VMfailValid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmInstructionError(pub u32);

impl VmInstructionError {
    /// The description SDM Vol. 3C, Table 31-1 gives this error.
    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "VMCALL executed in VMX root operation",
            2 => "VMCLEAR with invalid physical address",
            3 => "VMCLEAR with VMXON pointer",
            4 => "VMLAUNCH with non-clear VMCS",
            5 => "VMRESUME with non-launched VMCS",
            6 => "VMRESUME after VMXOFF",
            7 => "VM entry with invalid control field(s)",
            8 => "VM entry with invalid host-state field(s)",
            9 => "VMPTRLD with invalid physical address",
            10 => "VMPTRLD with VMXON pointer",
            11 => "VMPTRLD with incorrect VMCS revision identifier",
            12 => "VMREAD/VMWRITE from/to unsupported VMCS component",
            13 => "VMWRITE to read-only VMCS component",
            15 => "VMXON executed in VMX root operation",
            16 => "VM entry with invalid executive-VMCS pointer",
            17 => "VM entry with non-launched executive VMCS",
            18 => "VM entry with executive-VMCS pointer not VMXON pointer",
            19 => "VMCALL with non-clear VMCS",
            20 => "VMCALL with invalid VM-exit control fields",
            22 => "VMCALL with incorrect MSEG revision identifier",
            23 => "VMXOFF under dual-monitor treatment of SMIs and SMM",
            24 => "VMCALL with invalid SMM-monitor features",
            25 => "VM entry with invalid VM-execution control fields in executive VMCS",
            26 => "VM entry with events blocked by MOV SS",
            28 => "invalid operand to INVEPT/INVVPID",
            _ => "unknown VM-instruction error",
        }
    }
}

impl defmt::Format for VmInstructionError {
    fn format(&self, f: defmt::Formatter) {
        defmt::write!(
            f,
            "{=str} (VM-instruction error {=u32})",
            self.name(),
            self.0
        );
    }
}
