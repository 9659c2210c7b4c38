//! CPU state a guest leaves in registers the hypervisor must carry when it moves the guest to
//! another CPU (re-protection): XMM registers and MXCSR, the SYSCALL and base MSRs, CR2, the
//! debug address registers and the TPR. [`load`] fills them with values that follow from a
//! seed; [`changed`] names the first that no longer holds its value.

use core::arch::asm;

use crate::cpu::{rdmsr, wrmsr};

/// IA32_STAR, IA32_LSTAR, IA32_CSTAR, IA32_FMASK, IA32_FS_BASE, IA32_GS_BASE,
/// IA32_KERNEL_GS_BASE, IA32_TSC_AUX, with the bits each keeps (TSC_AUX is 32 bits; STAR's low
/// half is reserved; the bases and LSTAR/CSTAR must be canonical, so they stay low).
const MSRS: [(u32, u64, &str); 8] = [
    (0xc000_0081, 0xffff_ffff_0000_0000, "STAR"),
    (0xc000_0082, 0x0000_7fff_ffff_fff0, "LSTAR"),
    (0xc000_0083, 0x0000_7fff_ffff_fff0, "CSTAR"),
    (0xc000_0084, 0x0000_0000_ffff_ffff, "FMASK"),
    (0xc000_0100, 0x0000_7fff_ffff_f000, "FS_BASE"),
    (0xc000_0101, 0x0000_7fff_ffff_f000, "GS_BASE"),
    (0xc000_0102, 0x0000_7fff_ffff_f000, "KERNEL_GS_BASE"),
    (0xc000_0103, 0x0000_0000_ffff_ffff, "TSC_AUX"),
];
/// CR4.OSFXSR: SSE instructions may run (SDM Vol. 3A, 2.5).
const CR4_OSFXSR: u64 = 1 << 9;
/// MXCSR with all exceptions masked and round toward zero (SDM Vol. 1, 10.2.3).
const MXCSR: u32 = 0x7f80;

/// The value for register `n` from `seed`.
fn value(seed: u64, n: u64) -> u64 {
    (seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15)).rotate_left(n as u32 + 7)
}

fn xmm(n: u64) -> u64 {
    let v: u64;
    // SAFETY: reads one XMM register; CR4.OSFXSR is set by `load`.
    unsafe {
        match n {
            0 => asm!("movq {}, xmm0", out(reg) v),
            1 => asm!("movq {}, xmm7", out(reg) v),
            2 => asm!("movq {}, xmm8", out(reg) v),
            _ => asm!("movq {}, xmm15", out(reg) v),
        }
    }
    v
}

fn set_xmm(n: u64, v: u64) {
    // SAFETY: as in `xmm`; the guest is soft-float, so nothing else uses these registers.
    unsafe {
        match n {
            0 => asm!("movq xmm0, {}", in(reg) v),
            1 => asm!("movq xmm7, {}", in(reg) v),
            2 => asm!("movq xmm8, {}", in(reg) v),
            _ => asm!("movq xmm15, {}", in(reg) v),
        }
    }
}

fn debug_address(n: u64) -> u64 {
    let v: u64;
    // SAFETY: reads a debug address register at CPL 0; DR7 leaves them all disabled.
    unsafe {
        match n {
            0 => asm!("mov {}, dr0", out(reg) v),
            1 => asm!("mov {}, dr1", out(reg) v),
            2 => asm!("mov {}, dr2", out(reg) v),
            _ => asm!("mov {}, dr3", out(reg) v),
        }
    }
    v
}

fn set_debug_address(n: u64, v: u64) {
    // SAFETY: as in `debug_address`: with DR7 clear no breakpoint is armed.
    unsafe {
        match n {
            0 => asm!("mov dr0, {}", in(reg) v),
            1 => asm!("mov dr1, {}", in(reg) v),
            2 => asm!("mov dr2, {}", in(reg) v),
            _ => asm!("mov dr3, {}", in(reg) v),
        }
    }
}

/// Fills the registers with values that follow from `seed`.
pub fn load(seed: u64) {
    // SAFETY: enabling SSE changes nothing the soft-float guest relies on; MXCSR is valid.
    unsafe {
        asm!("mov {t}, cr4", "or {t}, {bit}", "mov cr4, {t}", t = out(reg) _, bit = in(reg) CR4_OSFXSR);
        asm!("ldmxcsr [{}]", in(reg) &MXCSR);
    }
    for n in 0..4 {
        set_xmm(n, value(seed, n));
        set_debug_address(n, value(seed, 10 + n));
    }
    for (i, &(msr, mask, _)) in MSRS.iter().enumerate() {
        wrmsr(msr, value(seed, 20 + i as u64) & mask);
    }
    // SAFETY: CR2 only reports page-fault addresses; CR8 = 1 masks no vector the guest uses.
    unsafe {
        asm!("mov cr2, {}", in(reg) value(seed, 30));
        asm!("mov cr8, {}", in(reg) 1u64);
    }
}

/// The first register that no longer holds what [`load`] put there, if any.
pub fn changed(seed: u64) -> Option<&'static str> {
    const XMM: [&str; 4] = ["XMM0", "XMM7", "XMM8", "XMM15"];
    const DR: [&str; 4] = ["DR0", "DR1", "DR2", "DR3"];
    for n in 0..4 {
        if xmm(n) != value(seed, n) {
            return Some(XMM[n as usize]);
        }
        if debug_address(n) != value(seed, 10 + n) {
            return Some(DR[n as usize]);
        }
    }
    for (i, &(msr, mask, name)) in MSRS.iter().enumerate() {
        if rdmsr(msr) != value(seed, 20 + i as u64) & mask {
            return Some(name);
        }
    }
    let mut mxcsr: u32 = 0;
    let (cr2, cr8): (u64, u64);
    // SAFETY: reads MXCSR, CR2 and CR8 at CPL 0.
    unsafe {
        asm!("stmxcsr [{}]", in(reg) &mut mxcsr);
        asm!("mov {}, cr2", out(reg) cr2);
        asm!("mov {}, cr8", out(reg) cr8);
    }
    if mxcsr != MXCSR {
        return Some("MXCSR");
    }
    if cr2 != value(seed, 30) {
        return Some("CR2");
    }
    (cr8 != 1).then_some("CR8")
}
