//! What a guest reads from the ID registers. HCR_EL2.TID3 traps EL1 reads of the whole ID space
//! (op0 3, op1 0, CRn 0, CRm 1-7; Arm ARM D19.2.49, HCR_EL2.TID3); the guest
//! gets the CPU's own value with the features Tandem traps hidden, so a guest that probes before
//! it uses a feature never meets the undefined-instruction fault those traps give (as KVM and Xen
//! sanitise the same registers).

use tock_registers::{LocalRegisterCopy, register_bitfields};

register_bitfields! {u64,
    /// The ISS of a trapped MSR/MRS (Arm ARM D19.2.43, "ISS encoding for an exception from MSR,
    /// MRS, or System instruction execution in AArch64 state").
    pub SYSREG_ISS [
        OP0 OFFSET(20) NUMBITS(2) [],
        OP2 OFFSET(17) NUMBITS(3) [],
        OP1 OFFSET(14) NUMBITS(3) [],
        CRN OFFSET(10) NUMBITS(4) [],
        /// The general register transferred (31 = XZR).
        RT OFFSET(5) NUMBITS(5) [],
        CRM OFFSET(1) NUMBITS(4) [],
        /// 1: MRS (a read).
        READ OFFSET(0) NUMBITS(1) []
    ]
}

/// A read of the ID register space: which register (CRm, op2), into which general register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRead {
    crm: u8,
    op2: u8,
    pub rt: usize,
}

/// The ID register read a trapped MSR/MRS syndrome describes, if it is one.
pub fn decode(iss: u64) -> Option<IdRead> {
    let iss = LocalRegisterCopy::<u64, SYSREG_ISS::Register>::new(iss);
    let crm = iss.read(SYSREG_ISS::CRM) as u8;
    let id_space = iss.read(SYSREG_ISS::OP0) == 3
        && iss.read(SYSREG_ISS::OP1) == 0
        && iss.read(SYSREG_ISS::CRN) == 0
        && (1..=7).contains(&crm);
    (id_space && iss.is_set(SYSREG_ISS::READ)).then(|| IdRead {
        crm,
        op2: iss.read(SYSREG_ISS::OP2) as u8,
        rt: iss.read(SYSREG_ISS::RT) as usize,
    })
}

/// A 4-bit ID field at `shift`.
const fn field(shift: u32) -> u64 {
    0xf << shift
}

/// The fields a guest must read as 0 ("not implemented"), by register (CRm, op2); the field
/// positions are those of each register's description in the Arm ARM (D19.2).
const HIDDEN: &[(u8, u8, u64)] = &[
    // ID_PFR0_EL1: RAS (TERR traps the error records), AMU (CPTR_EL2.TAM).
    (1, 0, field(28) | field(20)),
    // ID_DFR0_EL1: PerfMon (MDCR_EL2.TPM, unless the PMU is given: `PMU`), MMapTrc and CopTrc
    // (CPTR_EL2.TTA).
    (1, 2, field(24) | field(16) | field(12)),
    // ID_AA64PFR0_EL1: AMU (CPTR_EL2.TAM), SVE (CPTR_EL2.TZ, unless offered: `SVE`), RAS
    // (HCR_EL2.TERR).
    (4, 0, field(44) | field(32) | field(28)),
    // ID_AA64PFR1_EL1: SME (CPTR_EL2.TSM).
    (4, 1, field(24)),
    // ID_AA64ZFR0_EL1 and ID_AA64SMFR0_EL1 describe SVE and SME: all of them (SVE's unless
    // offered).
    (4, 4, u64::MAX),
    (4, 5, u64::MAX),
    // ID_AA64DFR0_EL1: BRBE, MTPMU, TraceBuffer, TraceFilt, PMSVer (MDCR_EL2.E2PB/TPMS, TTRF),
    // PMUVer (MDCR_EL2.TPM, unless the PMU is given: `PMU`), TraceVer (CPTR_EL2.TTA). DebugVer
    // stays: the debug architecture is always there, its registers trap (MDCR_EL2.TDA).
    (
        5,
        0,
        field(52) | field(48) | field(44) | field(40) | field(32) | field(8) | field(4),
    ),
    // ID_AA64ISAR0_EL1: RNDR. RNDR and RNDRRS cannot be trapped, and FT cannot log what they
    // return: a guest that finds them absent takes its randomness from elsewhere.
    (6, 0, field(60)),
];

/// The fields that describe SVE, shown to a vCPU that has it (`vcpu::sve_offered`):
/// ID_AA64PFR0_EL1.SVE and ID_AA64ZFR0_EL1.
const SVE: &[(u8, u8, u64)] = &[(4, 0, field(32)), (4, 4, u64::MAX)];

/// The fields that describe the PMU, shown to a vCPU that uses it (`pmu::granted`):
/// ID_DFR0_EL1.PerfMon and ID_AA64DFR0_EL1.PMUVer, the CPU's own version.
const PMU: &[(u8, u8, u64)] = &[(1, 2, field(24)), (5, 0, field(8))];

/// What a vCPU is offered beyond the rest, whose ID fields it then sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offered {
    pub sve: bool,
    pub pmu: bool,
}

fn mask(table: &[(u8, u8, u64)], read: IdRead) -> u64 {
    table
        .iter()
        .find(|&&(crm, op2, _)| crm == read.crm && op2 == read.op2)
        .map_or(0, |&(_, _, mask)| mask)
}

/// The value the guest reads for `read`, on a vCPU `offered` SVE or the PMU or both.
pub fn guest_value(read: IdRead, offered: Offered) -> u64 {
    let sve = if offered.sve { mask(SVE, read) } else { 0 };
    let pmu = if offered.pmu { mask(PMU, read) } else { 0 };
    hardware(read.crm, read.op2) & !(mask(HIDDEN, read) & !(sve | pmu))
}

/// One row of the ID space: `op2` selects the register in row `crm`.
macro_rules! id_row {
    ($crm:literal, $op2:expr) => {
        match $op2 {
            0 => id_read!($crm, 0),
            1 => id_read!($crm, 1),
            2 => id_read!($crm, 2),
            3 => id_read!($crm, 3),
            4 => id_read!($crm, 4),
            5 => id_read!($crm, 5),
            6 => id_read!($crm, 6),
            _ => id_read!($crm, 7),
        }
    };
}

macro_rules! id_read {
    ($crm:literal, $op2:literal) => {{
        let value: u64;
        // SAFETY: an ID register read has no side effect, and every encoding of the ID space
        // reads at EL2: the Arm ARM reserves its unallocated encodings as RAZ.
        unsafe {
            core::arch::asm!(
                concat!("mrs {}, s3_0_c0_c", stringify!($crm), "_", stringify!($op2)),
                out(reg) value,
                options(nomem, nostack, preserves_flags)
            )
        };
        value
    }};
}

/// The CPU's own value of ID register (3, 0, C0, C`crm`, `op2`), `crm` in 1..=7.
fn hardware(crm: u8, op2: u8) -> u64 {
    match crm {
        1 => id_row!(1, op2),
        2 => id_row!(2, op2),
        3 => id_row!(3, op2),
        4 => id_row!(4, op2),
        5 => id_row!(5, op2),
        6 => id_row!(6, op2),
        _ => id_row!(7, op2),
    }
}
