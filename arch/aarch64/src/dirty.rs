//! Dirty-page tracking on aarch64 (`tandem_hw::dirty`): stage-2 permission faults, and the IPA
//! they are at.

use aarch64_cpu::registers::*;
use tandem_hw::dirty::Tracked;

use crate::stage2::Stage2;

impl Tracked for Stage2 {
    /// Drops the stage-1 and stage-2 translations of the current VMID.
    fn flush_guest_tlb() {
        // SAFETY: only drops cached translations of the guest this CPU runs, which is not
        // running.
        unsafe {
            core::arch::asm!(
                "dsb ishst",
                "tlbi vmalls12e1",
                "dsb nsh",
                "isb",
                options(nostack)
            )
        };
    }
}

/// The IPA of a stage-2 permission fault. HPFAR_EL2 holds it only for a fault on a stage-1 table
/// walk (ESR_EL2.ISS.S1PTW) (Arm ARM D19.2.55, HPFAR_EL2); otherwise FAR_EL2's address is
/// translated again through the guest's stage 1 (AT S1E1R, Arm ARM C5.5), as KVM does. `None`
/// when that walk fails (the guest changed its tables meanwhile): the guest retries the access.
pub fn fault_ipa(s1ptw: bool) -> Option<u64> {
    let far = FAR_EL2.get();
    if s1ptw {
        return Some(HPFAR_EL2.read(HPFAR_EL2::FIPA) << 12 | (far & 0xfff));
    }
    // PAR_EL1 is the guest's: kept across the walk.
    let guest_par = PAR_EL1.get();
    // SAFETY: AT only translates an address through the guest's stage 1 (this CPU's EL1
    // regime) and writes PAR_EL1, which is put back below.
    unsafe { core::arch::asm!("at s1e1r, {}", "isb", in(reg) far, options(nostack)) };
    let par = PAR_EL1.get();
    PAR_EL1.set(guest_par);
    if par & 1 != 0 {
        return None;
    }
    Some((par & 0x0000_ffff_ffff_f000) | (far & 0xfff))
}
