//! The guest's EL1 physical timer. CNTHCTL_EL2.EL1PCEN = 0 traps its CNTP_CTL_EL0, CNTP_CVAL_EL0
//! and CNTP_TVAL_EL0 (Arm ARM D19.2.21, reported with EC 0x18): the CPU's own physical timer
//! would raise a PPI at the hypervisor, not the guest. The partition's device tree names the
//! timer's interrupt, so a guest may use it: the core's model
//! ([`tandem_core::devices::ptimer`]) keeps its registers against the physical counter the guest
//! reads (CNTPCT_EL0, which no offset changes), and its interrupt is a level in the vGIC. Copies
//! of a fault-tolerant partition are not given it (when it fires is not logged): their accesses
//! stay undefined instructions.

use tandem_core::devices::ptimer::TimerRegister;
use tock_registers::LocalRegisterCopy;

use crate::idregs::SYSREG_ISS;

/// A trapped access to the physical timer: which register, the general register (31 = XZR), and
/// whether it is a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerAccess {
    pub register: TimerRegister,
    pub rt: usize,
    pub read: bool,
}

/// The physical-timer access a trapped MSR/MRS syndrome describes, if it is one: CNTP_TVAL_EL0,
/// CNTP_CTL_EL0 and CNTP_CVAL_EL0 are (op0 3, op1 3, CRn 14, CRm 2, op2 0, 1, 2).
pub fn decode(iss: u64) -> Option<TimerAccess> {
    let iss = LocalRegisterCopy::<u64, SYSREG_ISS::Register>::new(iss);
    let timer = iss.read(SYSREG_ISS::OP0) == 3
        && iss.read(SYSREG_ISS::OP1) == 3
        && iss.read(SYSREG_ISS::CRN) == 14
        && iss.read(SYSREG_ISS::CRM) == 2;
    let register = match iss.read(SYSREG_ISS::OP2) {
        0 => TimerRegister::TimerValue,
        1 => TimerRegister::Control,
        2 => TimerRegister::CompareValue,
        _ => return None,
    };
    timer.then(|| TimerAccess {
        register,
        rt: iss.read(SYSREG_ISS::RT) as usize,
        read: iss.is_set(SYSREG_ISS::READ),
    })
}
