//! VMCS field encodings (SDM Vol. 3D, Appendix B) and the VMX instructions that manage VMCSs.

use core::arch::asm;

/// Why a VMX instruction failed (SDM Vol. 3C, 31.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum VmFail {
    /// No current VMCS (CF=1).
    Invalid,
    /// Failed with this VM-instruction error number (ZF=1).
    Valid(u32),
}

fn check(rflags: u64) -> Result<(), VmFail> {
    const CF: u64 = 1 << 0;
    const ZF: u64 = 1 << 6;
    if rflags & CF != 0 {
        Err(VmFail::Invalid)
    } else if rflags & ZF != 0 {
        Err(VmFail::Valid(read(ro::INSTRUCTION_ERROR) as u32))
    } else {
        Ok(())
    }
}

/// Enters VMX operation with the VMXON region at `phys`.
///
/// # Safety
/// CR4.VMXE is set, CR0/CR4 meet the fixed-bit rules, and `phys` is a 4 KiB frame that holds the
/// VMCS revision identifier and is used for nothing else.
pub unsafe fn vmxon(phys: u64) -> Result<(), VmFail> {
    let rflags: u64;
    // SAFETY: the caller's contract.
    unsafe { asm!("vmxon [{}]", "pushfq", "pop {}", in(reg) &phys, lateout(reg) rflags) };
    check(rflags)
}

/// Initialises the VMCS at `phys` and makes it inactive.
///
/// # Safety
/// `phys` is a VMCS frame owned by the caller, in VMX operation.
pub unsafe fn vmclear(phys: u64) -> Result<(), VmFail> {
    let rflags: u64;
    // SAFETY: the caller's contract.
    unsafe { asm!("vmclear [{}]", "pushfq", "pop {}", in(reg) &phys, lateout(reg) rflags) };
    check(rflags)
}

/// Makes the VMCS at `phys` current on this CPU.
///
/// # Safety
/// As [`vmclear`]; the VMCS is not current on another CPU.
pub unsafe fn vmptrld(phys: u64) -> Result<(), VmFail> {
    let rflags: u64;
    // SAFETY: the caller's contract.
    unsafe { asm!("vmptrld [{}]", "pushfq", "pop {}", in(reg) &phys, lateout(reg) rflags) };
    check(rflags)
}

/// Reads a field of the current VMCS; 0 if there is none.
pub fn read(field: u32) -> u64 {
    let value: u64;
    // SAFETY: VMREAD only reads the current VMCS and fails harmlessly without one.
    unsafe { asm!("vmread {}, {}", out(reg) value, in(reg) u64::from(field), options(nostack)) };
    value
}

/// Writes a field of the current VMCS.
pub fn write(field: u32, value: u64) -> Result<(), VmFail> {
    let rflags: u64;
    // SAFETY: VMWRITE only changes the current VMCS, which belongs to the vCPU this CPU runs;
    // host-state fields are only written with this CPU's own values.
    unsafe {
        asm!("vmwrite {}, {}", "pushfq", "pop {}", in(reg) u64::from(field), in(reg) value,
             lateout(reg) rflags)
    };
    check(rflags)
}

/// INVEPT all-context (type 2): drops cached EPT translations on this CPU.
pub fn invept_all() {
    let descriptor = [0u64; 2];
    // SAFETY: invalidation only drops cached translations.
    unsafe { asm!("invept {}, [{}]", in(reg) 2u64, in(reg) &descriptor, options(nostack)) };
}

/// INVVPID all-context (type 2).
pub fn invvpid_all() {
    let descriptor = [0u64; 2];
    // SAFETY: as above.
    unsafe { asm!("invvpid {}, [{}]", in(reg) 2u64, in(reg) &descriptor, options(nostack)) };
}

pub mod ctrl {
    pub const VPID: u32 = 0x0000;
    pub const IO_BITMAP_A: u32 = 0x2000;
    pub const IO_BITMAP_B: u32 = 0x2002;
    pub const MSR_BITMAP: u32 = 0x2004;
    pub const EPT_POINTER: u32 = 0x201a;
    pub const PIN_BASED: u32 = 0x4000;
    pub const PROC_BASED: u32 = 0x4002;
    pub const EXCEPTION_BITMAP: u32 = 0x4004;
    pub const CR3_TARGET_COUNT: u32 = 0x400a;
    pub const EXIT_CONTROLS: u32 = 0x400c;
    pub const ENTRY_CONTROLS: u32 = 0x4012;
    pub const ENTRY_INTERRUPTION_INFO: u32 = 0x4016;
    pub const ENTRY_EXCEPTION_ERROR: u32 = 0x4018;
    pub const ENTRY_INSTRUCTION_LEN: u32 = 0x401a;
    pub const PROC_BASED2: u32 = 0x401e;
    pub const CR0_MASK: u32 = 0x6000;
    pub const CR4_MASK: u32 = 0x6002;
    pub const CR0_SHADOW: u32 = 0x6004;
    pub const CR4_SHADOW: u32 = 0x6006;
}

pub mod ro {
    pub const GUEST_PHYSICAL_ADDRESS: u32 = 0x2400;
    pub const INSTRUCTION_ERROR: u32 = 0x4400;
    pub const EXIT_REASON: u32 = 0x4402;
    pub const IDT_VECTORING_INFO: u32 = 0x4408;
    pub const IDT_VECTORING_ERROR: u32 = 0x440a;
    pub const EXIT_INSTRUCTION_LEN: u32 = 0x440c;
    pub const EXIT_QUALIFICATION: u32 = 0x6400;
}

pub mod guest {
    pub const ES_SELECTOR: u32 = 0x0800;
    pub const LDTR_SELECTOR: u32 = 0x080c;
    pub const TR_SELECTOR: u32 = 0x080e;
    pub const LINK_POINTER: u32 = 0x2800;
    pub const IA32_DEBUGCTL: u32 = 0x2802;
    pub const IA32_PAT: u32 = 0x2804;
    pub const IA32_EFER: u32 = 0x2806;
    pub const ES_LIMIT: u32 = 0x4800;
    pub const LDTR_LIMIT: u32 = 0x480c;
    pub const TR_LIMIT: u32 = 0x480e;
    pub const GDTR_LIMIT: u32 = 0x4810;
    pub const IDTR_LIMIT: u32 = 0x4812;
    pub const ES_ACCESS: u32 = 0x4814;
    pub const LDTR_ACCESS: u32 = 0x4820;
    pub const TR_ACCESS: u32 = 0x4822;
    pub const INTERRUPTIBILITY: u32 = 0x4824;
    pub const ACTIVITY_STATE: u32 = 0x4826;
    pub const SYSENTER_CS: u32 = 0x482a;
    pub const PREEMPTION_TIMER: u32 = 0x482e;
    pub const CR0: u32 = 0x6800;
    pub const CR3: u32 = 0x6802;
    pub const CR4: u32 = 0x6804;
    pub const ES_BASE: u32 = 0x6806;
    pub const LDTR_BASE: u32 = 0x6812;
    pub const TR_BASE: u32 = 0x6814;
    pub const GDTR_BASE: u32 = 0x6816;
    pub const IDTR_BASE: u32 = 0x6818;
    pub const DR7: u32 = 0x681a;
    pub const RSP: u32 = 0x681c;
    pub const RIP: u32 = 0x681e;
    pub const RFLAGS: u32 = 0x6820;
    pub const PENDING_DEBUG: u32 = 0x6822;
    pub const SYSENTER_ESP: u32 = 0x6824;
    pub const SYSENTER_EIP: u32 = 0x6826;
}

pub mod host {
    pub const ES_SELECTOR: u32 = 0x0c00;
    pub const CS_SELECTOR: u32 = 0x0c02;
    pub const SS_SELECTOR: u32 = 0x0c04;
    pub const DS_SELECTOR: u32 = 0x0c06;
    pub const FS_SELECTOR: u32 = 0x0c08;
    pub const GS_SELECTOR: u32 = 0x0c0a;
    pub const TR_SELECTOR: u32 = 0x0c0c;
    pub const IA32_PAT: u32 = 0x2c00;
    pub const IA32_EFER: u32 = 0x2c02;
    pub const SYSENTER_CS: u32 = 0x4c00;
    pub const CR0: u32 = 0x6c00;
    pub const CR3: u32 = 0x6c02;
    pub const CR4: u32 = 0x6c04;
    pub const FS_BASE: u32 = 0x6c06;
    pub const GS_BASE: u32 = 0x6c08;
    pub const TR_BASE: u32 = 0x6c0a;
    pub const GDTR_BASE: u32 = 0x6c0c;
    pub const IDTR_BASE: u32 = 0x6c0e;
    pub const SYSENTER_ESP: u32 = 0x6c10;
    pub const SYSENTER_EIP: u32 = 0x6c12;
    pub const RSP: u32 = 0x6c14;
    pub const RIP: u32 = 0x6c16;
}
