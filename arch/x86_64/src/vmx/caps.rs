//! What the CPU's VMX implementation offers, and the control values Tandem needs from it
//! (SDM Vol. 3D, Appendix A).

use crate::io::{cpuid, rdmsr, wrmsr};

const IA32_FEATURE_CONTROL: u32 = 0x3a;
const IA32_VMX_BASIC: u32 = 0x480;
const IA32_VMX_PINBASED_CTLS: u32 = 0x481;
const IA32_VMX_PROCBASED_CTLS: u32 = 0x482;
const IA32_VMX_EXIT_CTLS: u32 = 0x483;
const IA32_VMX_ENTRY_CTLS: u32 = 0x484;
const IA32_VMX_MISC: u32 = 0x485;
pub const IA32_VMX_CR0_FIXED0: u32 = 0x486;
pub const IA32_VMX_CR0_FIXED1: u32 = 0x487;
pub const IA32_VMX_CR4_FIXED0: u32 = 0x488;
pub const IA32_VMX_CR4_FIXED1: u32 = 0x489;
const IA32_VMX_PROCBASED_CTLS2: u32 = 0x48b;
const IA32_VMX_EPT_VPID_CAP: u32 = 0x48c;
const IA32_VMX_TRUE_PINBASED_CTLS: u32 = 0x48d;
const IA32_VMX_TRUE_PROCBASED_CTLS: u32 = 0x48e;
const IA32_VMX_TRUE_EXIT_CTLS: u32 = 0x48f;
const IA32_VMX_TRUE_ENTRY_CTLS: u32 = 0x490;

pub mod pin {
    pub const EXTERNAL_INTERRUPT_EXITING: u32 = 1 << 0;
    pub const NMI_EXITING: u32 = 1 << 3;
    pub const PREEMPTION_TIMER: u32 = 1 << 6;
}
pub mod proc {
    pub const INTERRUPT_WINDOW_EXITING: u32 = 1 << 2;
    pub const HLT_EXITING: u32 = 1 << 7;
    pub const MWAIT_EXITING: u32 = 1 << 10;
    pub const RDPMC_EXITING: u32 = 1 << 11;
    pub const USE_IO_BITMAPS: u32 = 1 << 25;
    pub const USE_MSR_BITMAPS: u32 = 1 << 28;
    pub const MONITOR_EXITING: u32 = 1 << 29;
    pub const SECONDARY: u32 = 1 << 31;
}
pub mod proc2 {
    pub const ENABLE_EPT: u32 = 1 << 1;
    pub const ENABLE_VPID: u32 = 1 << 5;
    pub const UNRESTRICTED_GUEST: u32 = 1 << 7;
}
pub mod exit {
    pub const HOST_ADDRESS_SPACE_SIZE: u32 = 1 << 9;
    pub const SAVE_PAT: u32 = 1 << 18;
    pub const LOAD_PAT: u32 = 1 << 19;
    pub const SAVE_EFER: u32 = 1 << 20;
    pub const LOAD_EFER: u32 = 1 << 21;
}
pub mod entry {
    pub const IA32E_GUEST: u32 = 1 << 9;
    pub const LOAD_PAT: u32 = 1 << 14;
    pub const LOAD_EFER: u32 = 1 << 15;
}

/// Why VT-x cannot be used on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum Unsupported {
    NoVmx,
    DisabledByFirmware,
    /// A control Tandem needs is not offered: which MSR, and the bits missing.
    MissingControl {
        msr: u32,
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
    pub pin: u32,
    pub proc: u32,
    pub proc2: u32,
    pub exit: u32,
    pub entry: u32,
    /// The preemption timer counts down once every 2^rate TSC ticks.
    pub preemption_rate: u32,
}

/// `wanted` with the bits the CPU forces on, or the bits it cannot provide (SDM Vol. 3D, A.3).
fn adjust(msr: u32, wanted: u32) -> Result<u32, Unsupported> {
    // SAFETY: the VMX capability MSRs exist whenever CPUID reports VMX (checked by the caller).
    let caps = unsafe { rdmsr(msr) };
    let must_be_one = caps as u32;
    let may_be_one = (caps >> 32) as u32;
    let missing = wanted & !may_be_one;
    if missing != 0 {
        return Err(Unsupported::MissingControl { msr, bits: missing });
    }
    Ok(wanted | must_be_one)
}

pub fn probe() -> Result<Caps, Unsupported> {
    if cpuid(1, 0)[2] & (1 << 5) == 0 {
        return Err(Unsupported::NoVmx);
    }
    // SAFETY: IA32_FEATURE_CONTROL exists on VMX-capable CPUs; if firmware left it unlocked, we
    // enable VMX outside SMX and lock it, as firmware would (SDM Vol. 3C, 25.7).
    unsafe {
        let fc = rdmsr(IA32_FEATURE_CONTROL);
        if fc & 1 == 0 {
            wrmsr(IA32_FEATURE_CONTROL, fc | 1 | 1 << 2);
        } else if fc & (1 << 2) == 0 {
            return Err(Unsupported::DisabledByFirmware);
        }
    }
    // SAFETY: VMX capability MSRs exist (CPUID checked above).
    let basic = unsafe { rdmsr(IA32_VMX_BASIC) };
    let true_ctls = basic & (1 << 55) != 0;
    let pick = |plain, tru| if true_ctls { tru } else { plain };
    let pin = adjust(
        pick(IA32_VMX_PINBASED_CTLS, IA32_VMX_TRUE_PINBASED_CTLS),
        pin::EXTERNAL_INTERRUPT_EXITING | pin::NMI_EXITING | pin::PREEMPTION_TIMER,
    )?;
    let proc = adjust(
        pick(IA32_VMX_PROCBASED_CTLS, IA32_VMX_TRUE_PROCBASED_CTLS),
        proc::HLT_EXITING
            | proc::MWAIT_EXITING
            | proc::RDPMC_EXITING
            | proc::USE_IO_BITMAPS
            | proc::USE_MSR_BITMAPS
            | proc::MONITOR_EXITING
            | proc::SECONDARY,
    )?;
    let proc2 = adjust(
        IA32_VMX_PROCBASED_CTLS2,
        proc2::ENABLE_EPT | proc2::ENABLE_VPID | proc2::UNRESTRICTED_GUEST,
    )?;
    let exit = adjust(
        pick(IA32_VMX_EXIT_CTLS, IA32_VMX_TRUE_EXIT_CTLS),
        exit::HOST_ADDRESS_SPACE_SIZE
            | exit::SAVE_PAT
            | exit::LOAD_PAT
            | exit::SAVE_EFER
            | exit::LOAD_EFER,
    )?;
    let entry = adjust(
        pick(IA32_VMX_ENTRY_CTLS, IA32_VMX_TRUE_ENTRY_CTLS),
        entry::IA32E_GUEST | entry::LOAD_PAT | entry::LOAD_EFER,
    )?;
    // 4-level walks, write-back tables, 2 MiB pages, INVEPT (all-context) and INVVPID (all-context).
    const EPT_NEEDED: u64 = 1 << 6 | 1 << 14 | 1 << 16 | 1 << 20 | 1 << 26 | 1 << 32 | 1 << 42;
    // SAFETY: as above.
    let ept = unsafe { rdmsr(IA32_VMX_EPT_VPID_CAP) };
    if ept & EPT_NEEDED != EPT_NEEDED {
        return Err(Unsupported::MissingEptCapability {
            bits: EPT_NEEDED & !ept,
        });
    }
    // SAFETY: as above.
    let misc = unsafe { rdmsr(IA32_VMX_MISC) };
    Ok(Caps {
        revision: basic as u32 & 0x7fff_ffff,
        pin,
        proc,
        proc2,
        exit,
        entry,
        preemption_rate: (misc & 0x1f) as u32,
    })
}
