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

/// The 512-byte FXSAVE area must be 16-byte aligned (SDM Vol. 1, 10.5.1), wherever the stack
/// is: a recovery captures on an exception's stack, whose alignment the compiler's layout of an
/// `align(16)` local cannot count on (an FXSAVE there raised #GP, and the recovery escalated).
/// So the area is 66 words, and the 64 that start on a 16-byte boundary are used.
struct FxArea([u64; 66]);

impl FxArea {
    const fn new() -> Self {
        FxArea([0; 66])
    }

    /// Where the aligned 64 words start: word 0 or 1. Valid only while the area stays put.
    fn skip(&self) -> usize {
        (self.0.as_ptr() as usize / 8) % 2
    }

    fn aligned(&mut self) -> &mut [u64] {
        let skip = self.skip();
        &mut self.0[skip..skip + 64]
    }
}

/// A snapshot value this CPU faults on loading: one from another board, or corrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum Unfit {
    Msr(u32),
    Mxcsr(u32),
}

/// Whether `address` is canonical for 48-bit linear addresses (SDM Vol. 1, 3.3.7.1).
fn canonical(address: u64) -> bool {
    (((address as i64) << 16) >> 16) as u64 == address
}

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
        let mut fx = FxArea::new();
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
                fx = in(reg) fx.aligned().as_mut_ptr(),
                cr2 = out(reg) self.cr2,
                dr0 = out(reg) self.dr[0],
                dr1 = out(reg) self.dr[1],
                dr2 = out(reg) self.dr[2],
                dr3 = out(reg) self.dr[3],
                dr6 = out(reg) self.dr6,
                options(nostack)
            );
        }
        self.fx.copy_from_slice(fx.aligned());
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

    /// Checks the values [`CpuState::restore`] loads into MSRs and the x87/SSE state, which
    /// fault on a reserved bit; a VMCS field the CPU refuses fails the VM entry instead.
    pub fn check(&self) -> Result<(), Unfit> {
        for (&value, &msr) in self.msrs.iter().zip(&MSRS) {
            let fits = match msr {
                // IA32_LSTAR, IA32_CSTAR and IA32_KERNEL_GS_BASE hold addresses: WRMSR faults
                // on a non-canonical one (SDM Vol. 4, 2.1).
                0xc000_0082 | 0xc000_0083 | 0xc000_0102 => canonical(value),
                // IA32_FMASK and IA32_TSC_AUX: bits 63:32 are reserved.
                0xc000_0084 | 0xc000_0103 => value >> 32 == 0,
                _ => true,
            };
            if !fits {
                return Err(Unfit::Msr(msr));
            }
        }
        // MXCSR, bytes 24-27 of the area: FXRSTOR faults on a bit outside MXCSR_MASK (SDM
        // Vol. 1, 10.2.3.1); bits 31:16 are reserved on every CPU, and the boards of a pair are
        // the same model, so the low 16 bits valid where the snapshot was taken are here.
        let mxcsr = self.fx[3] as u32;
        if mxcsr >> 16 != 0 {
            return Err(Unfit::Mxcsr(mxcsr));
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
        let mut fx = FxArea::new();
        fx.aligned().copy_from_slice(&self.fx);
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
                fx = in(reg) fx.aligned().as_ptr(),
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
