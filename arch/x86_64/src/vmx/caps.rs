//! What the CPU's VMX implementation offers, and the control values Tandem needs from it
//! (SDM Vol. 3D, Appendix A).

use bitflags::Flags;
use x86_64::registers::model_specific::Msr;

use super::fields::{
    BASIC_REVISION, CapabilityMsr, EntryControls, EptVpidCap, ExitControls, FeatureControl,
    IA32_FEATURE_CONTROL, MISC_PREEMPTION_RATE, PinControls, ProcControls, ProcControls2, VmxBasic,
};
use crate::io::cpuid;

/// CPUID.01H:ECX.VMX (SDM Vol. 3C, 25.6).
const CPUID_VMX: u32 = 1 << 5;

/// Why VT-x cannot be used on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum Unsupported {
    NoVmx,
    DisabledByFirmware,
    /// A control Tandem needs is not offered: which MSR, and the bits missing.
    MissingControl {
        msr: CapabilityMsr,
        bits: u32,
    },
    /// An EPT/VPID capability is missing (IA32_VMX_EPT_VPID_CAP bits).
    MissingEptCapability {
        bits: u64,
    },
}

/// The control values for every vCPU on this CPU, adjusted to what the CPU allows.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub revision: u32,
    pub pin: PinControls,
    pub proc: ProcControls,
    pub proc2: ProcControls2,
    /// The execution controls of a copy of a fault-tolerant partition.
    pub replicated: Execution,
    pub exit: ExitControls,
    pub entry: EntryControls,
    /// The preemption timer counts down once every 2^rate TSC ticks.
    pub preemption_rate: u32,
}

/// Primary and secondary processor-based execution controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Execution {
    pub proc: ProcControls,
    pub proc2: ProcControls2,
}

/// `wanted` with the bits the CPU forces on, or the bits it cannot provide (SDM Vol. 3D, A.3):
/// the low half of a control MSR holds the bits that must be 1, the high half those that may be.
fn adjust<T: Flags<Bits = u32>>(msr: CapabilityMsr, wanted: T) -> Result<T, Unsupported> {
    let caps = msr.read();
    let must_be_one = caps as u32;
    let may_be_one = (caps >> 32) as u32;
    let missing = wanted.bits() & !may_be_one;
    if missing != 0 {
        return Err(Unsupported::MissingControl { msr, bits: missing });
    }
    Ok(T::from_bits_retain(wanted.bits() | must_be_one))
}

/// `wanted` narrowed to the bits the CPU can provide: controls that only make an instruction the
/// guest may be shown work (RDTSCP, INVPCID). Whatever is missing is hidden from the guest's
/// CPUID instead (see [`Caps::hide_unsupported`]).
fn offered<T: Flags<Bits = u32>>(msr: CapabilityMsr, wanted: T) -> T {
    let may_be_one = (msr.read() >> 32) as u32;
    T::from_bits_retain(wanted.bits() & may_be_one)
}

/// CPUID bits of instructions a secondary control gates (SDM Vol. 2A, CPUID).
const EXT1_EDX_RDTSCP: u32 = 1 << 27;
const LEAF7_EBX_INVPCID: u32 = 1 << 10;
const LEAF7_ECX_RDPID: u32 = 1 << 22;
const LEAF1_ECX_RDRAND: u32 = 1 << 30;
const LEAF7_EBX_RDSEED: u32 = 1 << 18;

impl Caps {
    /// Clears from the host's CPUID answer the instructions this CPU cannot let a guest run:
    /// with "enable RDTSCP" or "enable INVPCID" off they raise #UD (SDM Vol. 3C, 26.6.2), so
    /// the guest must not be told they exist; nor of RDRAND and RDSEED where they exit (a
    /// fault-tolerant partition's, refused with #UD).
    pub fn hide_unsupported(
        proc2: ProcControls2,
        leaf: u32,
        subleaf: u32,
        host: [u32; 4],
    ) -> [u32; 4] {
        let [eax, mut ebx, mut ecx, mut edx] = host;
        let rdtscp = proc2.contains(ProcControls2::ENABLE_RDTSCP);
        match (leaf, subleaf) {
            (0x8000_0001, _) if !rdtscp => edx &= !EXT1_EDX_RDTSCP,
            (1, _) if proc2.contains(ProcControls2::RDRAND_EXITING) => ecx &= !LEAF1_ECX_RDRAND,
            (7, 0) => {
                if !rdtscp {
                    ecx &= !LEAF7_ECX_RDPID;
                }
                if proc2.contains(ProcControls2::RDSEED_EXITING) {
                    ebx &= !LEAF7_EBX_RDSEED;
                }
                if !proc2.contains(ProcControls2::ENABLE_INVPCID) {
                    ebx &= !LEAF7_EBX_INVPCID;
                }
            }
            _ => {}
        }
        [eax, ebx, ecx, edx]
    }
}

/// Lets firmware's choice stand, or, if it left IA32_FEATURE_CONTROL unlocked, enables VMX
/// outside SMX and locks it as firmware would (SDM Vol. 3C, 25.7).
fn check_feature_control() -> Result<(), Unsupported> {
    let mut msr = Msr::new(IA32_FEATURE_CONTROL);
    // SAFETY: IA32_FEATURE_CONTROL exists on VMX-capable CPUs (the caller checked CPUID); it is
    // written only while unlocked, which is what firmware would do before handing over.
    unsafe {
        let fc = FeatureControl::from_bits_retain(msr.read());
        if !fc.contains(FeatureControl::LOCKED) {
            msr.write((fc | FeatureControl::LOCKED | FeatureControl::VMX_OUTSIDE_SMX).bits());
        } else if !fc.contains(FeatureControl::VMX_OUTSIDE_SMX) {
            return Err(Unsupported::DisabledByFirmware);
        }
    }
    Ok(())
}

pub fn probe() -> Result<Caps, Unsupported> {
    if cpuid(1, 0)[2] & CPUID_VMX == 0 {
        return Err(Unsupported::NoVmx);
    }
    check_feature_control()?;
    let basic = CapabilityMsr::Basic.read();
    let true_ctls = VmxBasic::from_bits_retain(basic).contains(VmxBasic::TRUE_CONTROLS);
    let pick = |plain, tru| if true_ctls { tru } else { plain };
    let pin = adjust(
        pick(CapabilityMsr::PinbasedCtls, CapabilityMsr::TruePinbasedCtls),
        PinControls::EXTERNAL_INTERRUPT_EXITING
            | PinControls::NMI_EXITING
            | PinControls::PREEMPTION_TIMER,
    )?;
    let proc = adjust(
        pick(
            CapabilityMsr::ProcbasedCtls,
            CapabilityMsr::TrueProcbasedCtls,
        ),
        ProcControls::HLT_EXITING
            | ProcControls::MWAIT_EXITING
            | ProcControls::RDPMC_EXITING
            // CR8 is the physical TPR: a guest writing 15 would mask the hypervisor's own wake
            // vector (SDM Vol. 3A, 12.8.6). The shadow keeps the guest's TPR in its own page.
            | ProcControls::USE_TPR_SHADOW
            | ProcControls::USE_IO_BITMAPS
            | ProcControls::USE_MSR_BITMAPS
            | ProcControls::MONITOR_EXITING
            | ProcControls::SECONDARY,
    )?;
    // WBINVD writes back and flushes caches every partition shares: it exits and is dropped.
    let proc2 = adjust(
        CapabilityMsr::ProcbasedCtls2,
        ProcControls2::ENABLE_EPT
            | ProcControls2::ENABLE_VPID
            | ProcControls2::UNRESTRICTED_GUEST
            | ProcControls2::WBINVD_EXITING,
    )? | offered(
        CapabilityMsr::ProcbasedCtls2,
        ProcControls2::ENABLE_RDTSCP | ProcControls2::ENABLE_INVPCID,
    );
    // A fault-tolerant partition's copies must read the time and random numbers the log gives
    // them: RDTSC and RDTSCP exit (every VT-x CPU offers it), and so do RDRAND and RDSEED where
    // the CPU can make them (CPUID then hides them). Where it cannot, a guest using them makes
    // its backup diverge, which the backup reports. PAUSE exits too: interrupts reach an FT
    // guest only at a deterministic exit, and a guest spinning on a flag its interrupt handler
    // sets makes none otherwise.
    let replicated = Execution {
        proc: adjust(
            pick(
                CapabilityMsr::ProcbasedCtls,
                CapabilityMsr::TrueProcbasedCtls,
            ),
            proc | ProcControls::RDTSC_EXITING | ProcControls::PAUSE_EXITING,
        )?,
        proc2: proc2
            | offered(
                CapabilityMsr::ProcbasedCtls2,
                ProcControls2::RDRAND_EXITING | ProcControls2::RDSEED_EXITING,
            ),
    };
    // A VM exit sets DR7 to 0x400 (SDM Vol. 3C, 28.5.1): without saving and loading the debug
    // controls, the guest's breakpoints would vanish at its first exit.
    let exit = adjust(
        pick(CapabilityMsr::ExitCtls, CapabilityMsr::TrueExitCtls),
        ExitControls::SAVE_DEBUG_CONTROLS
            | ExitControls::HOST_ADDRESS_SPACE_SIZE
            | ExitControls::SAVE_PAT
            | ExitControls::LOAD_PAT
            | ExitControls::SAVE_EFER
            | ExitControls::LOAD_EFER,
    )?;
    let entry = adjust(
        pick(CapabilityMsr::EntryCtls, CapabilityMsr::TrueEntryCtls),
        EntryControls::LOAD_DEBUG_CONTROLS
            | EntryControls::IA32E_GUEST
            | EntryControls::LOAD_PAT
            | EntryControls::LOAD_EFER,
    )?;
    // 4-level walks, write-back tables, 2 MiB pages, INVEPT (all-context) and INVVPID (all-context).
    let needed = EptVpidCap::WALK_LENGTH_4
        | EptVpidCap::MEMORY_TYPE_WB
        | EptVpidCap::PAGE_2M
        | EptVpidCap::INVEPT
        | EptVpidCap::INVEPT_ALL_CONTEXT
        | EptVpidCap::INVVPID
        | EptVpidCap::INVVPID_ALL_CONTEXT;
    let ept = EptVpidCap::from_bits_retain(CapabilityMsr::EptVpidCap.read());
    if !ept.contains(needed) {
        return Err(Unsupported::MissingEptCapability {
            bits: needed.difference(ept).bits(),
        });
    }
    let misc = CapabilityMsr::Misc.read();
    Ok(Caps {
        revision: (basic & BASIC_REVISION) as u32,
        pin,
        proc,
        proc2,
        replicated,
        exit,
        entry,
        preemption_rate: (misc & MISC_PREEMPTION_RATE) as u32,
    })
}
