//! What a guest sees of the self-hosted debug registers. MDCR_EL2.TDA, TDOSA and TDRA trap EL1
//! accesses to the whole debug space (op0 2: MDSCR_EL1, the breakpoint and watchpoint registers,
//! the OS lock, the debug ROM address, the claim tags, the DCC; Arm ARM D19.3.18 and the System
//! register index's op0 = 0b10 encodings), because a guest breakpoint, watchpoint or step would act
//! on the whole CPU, hypervisor included. Hardware debug is not offered to partitions: the space
//! reads as zero and ignores writes, as KVM's guests see it when debugging is not set up, except
//! OSLSR_EL1, which says the OS lock is implemented and unlocked. A kernel that resets its debug
//! state at boot (Linux writes MDSCR_EL1, OSLAR_EL1 and every breakpoint) runs on instead of
//! taking an undefined-instruction fault.

use tock_registers::LocalRegisterCopy;

use crate::idregs::SYSREG_ISS;

/// A trapped access to the debug space: into or from which general register, and what a read
/// returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebugAccess {
    /// The general register read into, `None` for a write or a read into XZR.
    pub into: Option<usize>,
    pub value: u64,
}

/// OSLSR_EL1 (op0 2, op1 0, CRn 1, CRm 1, op2 4): OSLM = 0b10 (the OS lock is implemented, bit 3
/// of the field split over bits 3 and 0), OSLK = 0 (unlocked) (Arm ARM D19.3.32).
const OSLSR_IMPLEMENTED_UNLOCKED: u64 = 1 << 3;

/// The debug-space access a trapped MSR/MRS syndrome describes, if it is one.
pub fn decode(iss: u64) -> Option<DebugAccess> {
    let iss = LocalRegisterCopy::<u64, SYSREG_ISS::Register>::new(iss);
    if iss.read(SYSREG_ISS::OP0) != 2 {
        return None;
    }
    let oslsr = iss.read(SYSREG_ISS::OP1) == 0
        && iss.read(SYSREG_ISS::CRN) == 1
        && iss.read(SYSREG_ISS::CRM) == 1
        && iss.read(SYSREG_ISS::OP2) == 4;
    let rt = iss.read(SYSREG_ISS::RT) as usize;
    Some(DebugAccess {
        into: (iss.is_set(SYSREG_ISS::READ) && rt != 31).then_some(rt),
        value: if oslsr { OSLSR_IMPLEMENTED_UNLOCKED } else { 0 },
    })
}
