//! The physical counter of a fault-tolerant partition. Its copies must read the same time, so
//! CNTHCTL_EL2.EL1PCTEN = 0 traps their reads of CNTPCT_EL0 and CNTPCTSS_EL0 (Arm ARM D19.2.21,
//! reported with EC 0x18), and the core answers with the partition's logged time. The virtual
//! counter CNTVCT_EL0 cannot be trapped without FEAT_ECV, which QEMU 7.2 lacks: an FT guest must
//! not read it (the partitions file's documentation says so).

use tock_registers::LocalRegisterCopy;

use crate::idregs::SYSREG_ISS;

/// CNTPCT_EL0 (op0 3, op1 3, CRn 14, CRm 0, op2 1) or CNTPCTSS_EL0 (op2 5).
const COUNTER_OP2: [u64; 2] = [1, 5];

/// The general register (31 = XZR) a trapped MRS of the physical counter reads into, if the
/// syndrome `iss` is one.
pub fn decode(iss: u64) -> Option<usize> {
    let iss = LocalRegisterCopy::<u64, SYSREG_ISS::Register>::new(iss);
    let counter = iss.read(SYSREG_ISS::OP0) == 3
        && iss.read(SYSREG_ISS::OP1) == 3
        && iss.read(SYSREG_ISS::CRN) == 14
        && iss.read(SYSREG_ISS::CRM) == 0
        && COUNTER_OP2.contains(&iss.read(SYSREG_ISS::OP2));
    (counter && iss.is_set(SYSREG_ISS::READ)).then(|| iss.read(SYSREG_ISS::RT) as usize)
}
