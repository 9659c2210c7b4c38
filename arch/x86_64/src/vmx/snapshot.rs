//! The part of a vCPU's state that lives in its VMCS or only in the CPU while its guest runs,
//! captured so a copy of the partition on another CPU can go on from it (re-protection): the
//! VMCS guest-state area, the registers VT-x does not switch (CR2, DR0-DR3, DR6, the MSRs the
//! guest owns through the MSR bitmap) and the x87/SSE state, which the hypervisor never touches
//! (it is built soft-float), so the CPU's is the guest's as it left it.
//!
//! Left out on purpose: XSAVE-managed state beyond SSE (XSAVE is hidden from guests, so XCR0 is
//! never the guest's), and the VMX-preemption timer, which the exit loop re-arms at every entry.

use x86_64::registers::model_specific::Msr;

use super::fields::{VmcsField, ctrl, guest};
use super::vmcs::{self, VmFail};

const SEGMENTS: u32 = 6;
/// Every guest-state field Tandem's guests can change (SDM Vol. 3C, 26.4), and the CR0 and CR4
/// read shadows they see.
const FIELDS: [VmcsField; 60] = {
    let mut fields = [guest::CR0; 60];
    let mut i = 0;
    while i < SEGMENTS {
        fields[4 * i as usize] = guest::ES_SELECTOR.nth(i);
        fields[4 * i as usize + 1] = guest::ES_BASE.nth(i);
        fields[4 * i as usize + 2] = guest::ES_LIMIT.nth(i);
        fields[4 * i as usize + 3] = guest::ES_ACCESS.nth(i);
        i += 1;
    }
    let rest = [
        guest::LDTR_SELECTOR,
        guest::LDTR_BASE,
        guest::LDTR_LIMIT,
        guest::LDTR_ACCESS,
        guest::TR_SELECTOR,
        guest::TR_BASE,
        guest::TR_LIMIT,
        guest::TR_ACCESS,
        guest::GDTR_BASE,
        guest::GDTR_LIMIT,
        guest::IDTR_BASE,
        guest::IDTR_LIMIT,
        guest::CR0,
        guest::CR3,
        guest::CR4,
        guest::DR7,
        guest::RSP,
        guest::RIP,
        guest::RFLAGS,
        guest::PENDING_DEBUG,
        guest::INTERRUPTIBILITY,
        guest::ACTIVITY_STATE,
        guest::SYSENTER_CS,
        guest::SYSENTER_ESP,
        guest::SYSENTER_EIP,
        guest::IA32_DEBUGCTL,
        guest::IA32_PAT,
        guest::IA32_EFER,
        guest::PDPTE0,
        guest::PDPTE0.nth(1),
        guest::PDPTE0.nth(2),
        guest::PDPTE0.nth(3),
        ctrl::CR0_SHADOW,
        ctrl::CR4_SHADOW,
        // The guest's CR0 and CR4 bits the hypervisor owns, for the shadows above.
        ctrl::CR0_MASK,
        ctrl::CR4_MASK,
    ];
    let mut j = 0;
    while j < rest.len() {
        fields[4 * SEGMENTS as usize + j] = rest[j];
        j += 1;
    }
    fields
};

/// MSRs the guest reads and writes without exits and VT-x does not switch (`bitmaps`):
/// IA32_STAR, IA32_LSTAR, IA32_CSTAR, IA32_FMASK, IA32_KERNEL_GS_BASE, IA32_TSC_AUX.
const MSRS: [u32; 6] = [
    0xc000_0081,
    0xc000_0082,
    0xc000_0083,
    0xc000_0084,
    0xc000_0102,
    0xc000_0103,
];

/// The 512-byte FXSAVE area must be 16-byte aligned (SDM Vol. 1, 10.5.1).
#[repr(C, align(16))]
struct FxArea([u64; 64]);

/// Plain `#[repr(C)]` data, valid when all-zero.
#[repr(C)]
pub struct CpuState {
    vmcs: [u64; FIELDS.len()],
    msrs: [u64; MSRS.len()],
    /// CR2, DR0-DR3 and DR6.
    cr2: u64,
    dr: [u64; 4],
    dr6: u64,
    /// The x87/SSE state as FXSAVE stores it.
    fx: [u64; 64],
}

/// Flips bit `bit` of guest-state field `which` (modulo the fields captured) of the current VMCS:
/// the memory-fault injection's VMCS target. Returns the field's encoding.
pub fn flip_field(which: u64, bit: u32) -> Result<u32, VmFail> {
    let field = FIELDS[(which % FIELDS.len() as u64) as usize];
    let value = vmcs::try_read(field)?;
    vmcs::write(field, value ^ (1 << (bit % 64)))?;
    Ok(field.encoding())
}

impl CpuState {
    /// Sets the captured guest RIP.
    pub fn set_rip(&mut self, rip: u64) {
        if let Some(i) = FIELDS.iter().position(|&f| f == guest::RIP) {
            self.vmcs[i] = rip;
        }
    }

    /// Captures the current VMCS's guest state and this CPU's guest registers; the vCPU is
    /// paused in the hypervisor.
    pub fn capture(&mut self) -> Result<(), VmFail> {
        for (value, &field) in self.vmcs.iter_mut().zip(&FIELDS) {
            *value = vmcs::try_read(field)?;
        }
        for (value, &msr) in self.msrs.iter_mut().zip(&MSRS) {
            // SAFETY: these MSRs exist wherever VT-x with long mode does; reading has no effect.
            *value = unsafe { Msr::new(msr).read() };
        }
        let mut fx = FxArea([0; 64]);
        // SAFETY: reads CR2 and the debug registers at CPL 0 and stores the x87/SSE state into
        // `fx`, 512 aligned bytes; CR0.TS and CR0.EM are clear and CR4.OSFXSR set in VMX root
        // operation (`vmx::enable`), so FXSAVE neither faults nor leaves XMM out.
        unsafe {
            core::arch::asm!(
                "mov {cr2}, cr2",
                "mov {dr0}, dr0",
                "mov {dr1}, dr1",
                "mov {dr2}, dr2",
                "mov {dr3}, dr3",
                "mov {dr6}, dr6",
                "fxsave64 [{fx}]",
                fx = in(reg) fx.0.as_mut_ptr(),
                cr2 = out(reg) self.cr2,
                dr0 = out(reg) self.dr[0],
                dr1 = out(reg) self.dr[1],
                dr2 = out(reg) self.dr[2],
                dr3 = out(reg) self.dr[3],
                dr6 = out(reg) self.dr6,
                options(nostack)
            );
        }
        self.fx = fx.0;
        Ok(())
    }

    /// Gives the current VMCS and this CPU the state [`CpuState::capture`] took on another CPU;
    /// the guest has not run here yet.
    /// Writes the captured guest-state fields into the current VMCS.
    pub fn restore_vmcs(&self) -> Result<(), VmFail> {
        for (&value, &field) in self.vmcs.iter().zip(&FIELDS) {
            vmcs::write(field, value)?;
        }
        Ok(())
    }

    pub fn restore(&self) -> Result<(), VmFail> {
        self.restore_vmcs()?;
        for (&value, &msr) in self.msrs.iter().zip(&MSRS) {
            // SAFETY: the guest owns these MSRs on this CPU, which runs no other partition and
            // whose hypervisor code uses neither SYSCALL, SWAPGS nor TSC_AUX (`bitmaps`); each
            // value is one a CPU of the same model held, so writing it does not fault.
            unsafe { Msr::new(msr).write(value) };
        }
        let fx = FxArea(self.fx);
        // SAFETY: CR2 and the debug registers are the guest's on this CPU (the hypervisor uses
        // neither a page fault address nor breakpoints); FXRSTOR loads 512 aligned bytes an
        // FXSAVE on a CPU of the same model stored (reserved MXCSR bits clear), with CR0.TS and
        // CR0.EM clear and CR4.OSFXSR set as in `capture`.
        unsafe {
            core::arch::asm!(
                "mov cr2, {cr2}",
                "mov dr0, {dr0}",
                "mov dr1, {dr1}",
                "mov dr2, {dr2}",
                "mov dr3, {dr3}",
                "mov dr6, {dr6}",
                "fxrstor64 [{fx}]",
                fx = in(reg) fx.0.as_ptr(),
                cr2 = in(reg) self.cr2,
                dr0 = in(reg) self.dr[0],
                dr1 = in(reg) self.dr[1],
                dr2 = in(reg) self.dr[2],
                dr3 = in(reg) self.dr[3],
                dr6 = in(reg) self.dr6,
                options(nostack)
            );
        }
        // Translations the spare's VPID and EPT might still hold from before.
        vmcs::invept_all();
        vmcs::invvpid_all();
        Ok(())
    }
}
