//! A guest's SGIs. With HCR_EL2.IMO set, an EL1 write of ICC_SGI1R_EL1 traps to EL2 (EC 0x18;
//! Arm IHI 0069, 12.2.22, and the register's pseudocode): the virtual CPU interface cannot send
//! SGIs, so the hypervisor delivers them (`tandem_core::devices::sgi` decodes the value).

use tock_registers::LocalRegisterCopy;

use crate::idregs::SYSREG_ISS;

/// The general register (31 = XZR) a trapped MSR ICC_SGI1R_EL1 (op0 3, op1 0, CRn 12, CRm 11,
/// op2 5) writes, if the syndrome `iss` is one.
pub fn decode(iss: u64) -> Option<usize> {
    let iss = LocalRegisterCopy::<u64, SYSREG_ISS::Register>::new(iss);
    let sgi1r = iss.read(SYSREG_ISS::OP0) == 3
        && iss.read(SYSREG_ISS::OP1) == 0
        && iss.read(SYSREG_ISS::CRN) == 12
        && iss.read(SYSREG_ISS::CRM) == 11
        && iss.read(SYSREG_ISS::OP2) == 5;
    (sgi1r && !iss.is_set(SYSREG_ISS::READ)).then(|| iss.read(SYSREG_ISS::RT) as usize)
}
