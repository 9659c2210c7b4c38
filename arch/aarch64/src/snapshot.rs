//! The part of a vCPU's state that lives only in the CPU while its guest runs, captured so a copy
//! of the partition on another CPU can go on from it (re-protection), and into the ledger by a
//! recovery, which gives it back to the vCPU made again (`El2Vcpu::resume`): the EL1 system registers
//! the guest owns, its virtual timer, its virtual CPU interface, and its FP/SIMD registers (the
//! hypervisor never touches those, `lib.rs`, so they are the guest's as it left them).
//!
//! Left out on purpose: the debug registers (MDSCR_EL1 and the breakpoints), PMU and trace, which
//! trap to EL2 (MDCR_EL2.TDA, TPM, CPTR_EL2.TTA) so the guest never owns them; SVE and SME, which
//! are not offered (CPTR_EL2.TZ, TSM).

use aarch64_cpu::registers::*;

use crate::lr::{self, ListRegister};
use crate::sysreg::{read_sysreg, write_sysreg};

/// List registers a snapshot keeps (ICH_VTR_EL2.ListRegs allows at most 16, IHI 0069 12.4.12).
const MAX_LRS: usize = 16;

/// Plain `#[repr(C)]` data, valid when all-zero.
#[repr(C)]
pub struct El1State {
    /// Stage 1 of the guest (Arm ARM D19.2): SCTLR_EL1, TTBR0_EL1, TTBR1_EL1, TCR_EL1, MAIR_EL1,
    /// AMAIR_EL1, CONTEXTIDR_EL1.
    sctlr: u64,
    ttbr0: u64,
    ttbr1: u64,
    tcr: u64,
    mair: u64,
    amair: u64,
    contextidr: u64,
    /// Exceptions: VBAR_EL1, ELR_EL1, SPSR_EL1, ESR_EL1, FAR_EL1, AFSR0_EL1, AFSR1_EL1, PAR_EL1.
    vbar: u64,
    elr: u64,
    spsr: u64,
    esr: u64,
    far: u64,
    afsr0: u64,
    afsr1: u64,
    par: u64,
    /// Stacks and thread pointers: SP_EL0, SP_EL1, TPIDR_EL0, TPIDRRO_EL0, TPIDR_EL1.
    sp_el0: u64,
    sp_el1: u64,
    tpidr_el0: u64,
    tpidrro_el0: u64,
    tpidr_el1: u64,
    /// CPACR_EL1 (FP enable), CSSELR_EL1 (the cache level CCSIDR_EL1 describes), CNTKCTL_EL1.
    cpacr: u64,
    csselr: u64,
    cntkctl: u64,
    /// The virtual timer and counter: CNTV_CTL_EL0, CNTV_CVAL_EL0 and CNTVOFF_EL2 (the guest's
    /// virtual count is the physical count minus this offset, Arm ARM D11.2.4).
    cntv_ctl: u64,
    cntv_cval: u64,
    cntvoff: u64,
    /// The virtual CPU interface (IHI 0069 12.4): ICH_VMCR_EL2 (the guest's priority mask and
    /// group enables), ICH_AP0R0_EL2 and ICH_AP1R0_EL2 (active priorities), the list registers
    /// (on a GICv2 GICH_VMCR, GICH_APR and 0, the list registers translated: `lr`).
    vmcr: u64,
    ap0r0: u64,
    ap1r0: u64,
    lrs: [u64; MAX_LRS],
    /// FPCR, FPSR and V0-V31 (two words each).
    fpcr: u64,
    fpsr: u64,
    v: [u64; 64],
}

impl El1State {
    /// Captures this CPU's guest state; its vCPU is paused at EL2.
    pub fn capture(&mut self) {
        self.sctlr = SCTLR_EL1.get();
        self.ttbr0 = TTBR0_EL1.get();
        self.ttbr1 = TTBR1_EL1.get();
        self.tcr = TCR_EL1.get();
        self.mair = MAIR_EL1.get();
        self.amair = read_sysreg!("amair_el1");
        self.contextidr = CONTEXTIDR_EL1.get();
        self.vbar = VBAR_EL1.get();
        self.elr = ELR_EL1.get();
        self.spsr = SPSR_EL1.get();
        self.esr = ESR_EL1.get();
        self.far = FAR_EL1.get();
        self.afsr0 = read_sysreg!("afsr0_el1");
        self.afsr1 = read_sysreg!("afsr1_el1");
        self.par = PAR_EL1.get();
        self.sp_el0 = SP_EL0.get();
        self.sp_el1 = SP_EL1.get();
        self.tpidr_el0 = TPIDR_EL0.get();
        self.tpidrro_el0 = TPIDRRO_EL0.get();
        self.tpidr_el1 = TPIDR_EL1.get();
        self.cpacr = CPACR_EL1.get();
        self.csselr = CSSELR_EL1.get();
        self.cntkctl = CNTKCTL_EL1.get();
        self.cntv_ctl = CNTV_CTL_EL0.get();
        self.cntv_cval = CNTV_CVAL_EL0.get();
        self.cntvoff = CNTVOFF_EL2.get();
        self.vmcr = lr::vmcr();
        (self.ap0r0, self.ap1r0) = lr::active_priorities();
        for (n, slot) in self.lrs.iter_mut().enumerate().take(lr::count()) {
            *slot = lr::read(n).get();
        }
        // SAFETY: reads FPCR and FPSR and stores V0-V31 into `self.v`, 512 bytes; EL2 does not
        // trap FP/SIMD (CPTR_EL2.TFP = 0) and the hypervisor's own code never uses these
        // registers. The hypervisor is built without FP, so the assembler is told it exists.
        unsafe {
            core::arch::asm!(
                ".arch_extension fp",
                "mrs {1}, fpcr",
                "mrs {2}, fpsr",
                "stp q0, q1, [{0}, #0]",
                "stp q2, q3, [{0}, #32]",
                "stp q4, q5, [{0}, #64]",
                "stp q6, q7, [{0}, #96]",
                "stp q8, q9, [{0}, #128]",
                "stp q10, q11, [{0}, #160]",
                "stp q12, q13, [{0}, #192]",
                "stp q14, q15, [{0}, #224]",
                "stp q16, q17, [{0}, #256]",
                "stp q18, q19, [{0}, #288]",
                "stp q20, q21, [{0}, #320]",
                "stp q22, q23, [{0}, #352]",
                "stp q24, q25, [{0}, #384]",
                "stp q26, q27, [{0}, #416]",
                "stp q28, q29, [{0}, #448]",
                "stp q30, q31, [{0}, #480]",
                in(reg) self.v.as_mut_ptr(),
                out(reg) self.fpcr,
                out(reg) self.fpsr,
                options(nostack)
            );
        }
    }

    /// Gives this CPU's guest the state [`El1State::capture`] took on another CPU; the guest has
    /// not run here yet.
    pub fn restore(&self) {
        self.restore_system();
        // SAFETY: V0-V31 are loaded from `self.v`, 512 bytes, FPCR and FPSR from the capture: the
        // guest's own, as it left them on the CPU it ran on (EL2 does not trap FP/SIMD, and the
        // hypervisor never uses these registers).
        unsafe {
            core::arch::asm!(
                ".arch_extension fp",
                "msr fpcr, {1}",
                "msr fpsr, {2}",
                "ldp q0, q1, [{0}, #0]",
                "ldp q2, q3, [{0}, #32]",
                "ldp q4, q5, [{0}, #64]",
                "ldp q6, q7, [{0}, #96]",
                "ldp q8, q9, [{0}, #128]",
                "ldp q10, q11, [{0}, #160]",
                "ldp q12, q13, [{0}, #192]",
                "ldp q14, q15, [{0}, #224]",
                "ldp q16, q17, [{0}, #256]",
                "ldp q18, q19, [{0}, #288]",
                "ldp q20, q21, [{0}, #320]",
                "ldp q22, q23, [{0}, #352]",
                "ldp q24, q25, [{0}, #384]",
                "ldp q26, q27, [{0}, #416]",
                "ldp q28, q29, [{0}, #448]",
                "ldp q30, q31, [{0}, #480]",
                in(reg) self.v.as_ptr(),
                in(reg) self.fpcr,
                in(reg) self.fpsr,
                options(nostack)
            );
        }
    }

    /// Gives this CPU's guest the captured system registers, virtual timer and virtual CPU
    /// interface, but not the FP/SIMD registers: a recovery on the same CPU never touched those
    /// (the hypervisor does not use them), and writing V0-V31 would zero the upper bits of SVE's
    /// Z registers (Arm ARM, "SVE and Advanced SIMD register file"). Drops the guest's cached
    /// translations and instructions, as the memory holds them now.
    pub fn restore_system(&self) {
        SCTLR_EL1.set(self.sctlr);
        TTBR0_EL1.set(self.ttbr0);
        TTBR1_EL1.set(self.ttbr1);
        TCR_EL1.set(self.tcr);
        MAIR_EL1.set(self.mair);
        CONTEXTIDR_EL1.set(self.contextidr);
        VBAR_EL1.set(self.vbar);
        ELR_EL1.set(self.elr);
        SPSR_EL1.set(self.spsr);
        ESR_EL1.set(self.esr);
        FAR_EL1.set(self.far);
        PAR_EL1.set(self.par);
        SP_EL0.set(self.sp_el0);
        SP_EL1.set(self.sp_el1);
        TPIDR_EL0.set(self.tpidr_el0);
        TPIDRRO_EL0.set(self.tpidrro_el0);
        TPIDR_EL1.set(self.tpidr_el1);
        CPACR_EL1.set(self.cpacr);
        CSSELR_EL1.set(self.csselr);
        CNTKCTL_EL1.set(self.cntkctl);
        CNTVOFF_EL2.set(self.cntvoff);
        CNTV_CVAL_EL0.set(self.cntv_cval);
        CNTV_CTL_EL0.set(self.cntv_ctl);
        lr::set_vmcr(self.vmcr);
        lr::set_active_priorities((self.ap0r0, self.ap1r0));
        for (n, &value) in self.lrs.iter().enumerate().take(lr::count()) {
            lr::write(n, ListRegister::new(value));
        }
        // SAFETY: these registers only govern the guest this CPU runs, which is not running:
        // its EL1 auxiliary registers and active priorities, as it left them; then its cached
        // translations and instructions go, so it sees memory as it is now.
        unsafe {
            write_sysreg!("amair_el1", self.amair);
            write_sysreg!("afsr0_el1", self.afsr0);
            write_sysreg!("afsr1_el1", self.afsr1);
            core::arch::asm!(
                "tlbi vmalls12e1",
                "ic iallu",
                "dsb nsh",
                "isb",
                options(nostack)
            );
        }
    }
}
