//! PSCI (Arm DEN 0022): calls the hypervisor makes to the machine's firmware (QEMU implements it
//! over SMC when EL2 exists), and the decoding of the calls guests make to Tandem.

use tandem_core::power::PowerRequest;

const VERSION: u32 = 0x8400_0000;
const CPU_OFF: u32 = 0x8400_0002;
const CPU_ON_32: u32 = 0x8400_0003;
const CPU_ON_64: u32 = 0xc400_0003;
const AFFINITY_INFO_32: u32 = 0x8400_0004;
const AFFINITY_INFO_64: u32 = 0xc400_0004;
const SYSTEM_OFF: u32 = 0x8400_0008;
const SYSTEM_RESET: u32 = 0x8400_0009;
const FEATURES: u32 = 0x8400_000a;

/// Whether `x0` of an HVC or SMC is a PSCI function (the standard service range of SMCCC).
pub fn is_psci(x0: u64) -> bool {
    let f = x0 as u32;
    x0 >> 32 == 0 && (f & 0xbfff_ffe0) == 0x8400_0000
}

/// The vCPU index a guest MPIDR names: Tandem gives vCPU n the affinity Aff0 = n.
fn vcpu_of(mpidr: u64) -> u64 {
    if mpidr & !0xff == 0 { mpidr } else { u64::MAX }
}

fn implemented(function: u32) -> bool {
    !matches!(decode(function, [0; 3]), PowerRequest::Unknown { .. })
}

/// Decodes a guest's PSCI call: function in X0, arguments in X1..X3.
pub fn decode(function: u32, args: [u64; 3]) -> PowerRequest {
    match function {
        VERSION => PowerRequest::Version,
        FEATURES => PowerRequest::Features {
            implemented: implemented(args[0] as u32),
        },
        CPU_ON_32 | CPU_ON_64 => PowerRequest::CpuOn {
            target: vcpu_of(args[0]),
            entry: args[1],
            context: args[2],
        },
        CPU_OFF => PowerRequest::CpuOff,
        AFFINITY_INFO_32 | AFFINITY_INFO_64 => PowerRequest::AffinityInfo {
            target: vcpu_of(args[0]),
        },
        SYSTEM_OFF => PowerRequest::SystemOff,
        SYSTEM_RESET => PowerRequest::SystemReset,
        function => PowerRequest::Unknown { function },
    }
}

/// Starts physical CPU `mpidr` at `entry` with `context` in X0, through the machine's firmware.
/// Returns the PSCI status.
pub fn cpu_on(mpidr: u64, entry: u64, context: u64) -> i64 {
    let status: u64;
    // SAFETY: CPU_ON only starts another CPU at `entry`, which the caller provides as the
    // secondary boot path; SMCCC preserves X4-X17 and the stack (DEN 0028, 2.6).
    unsafe {
        core::arch::asm!("smc #0", inlateout("x0") u64::from(CPU_ON_64) => status,
                         inlateout("x1") mpidr => _, inlateout("x2") entry => _,
                         inlateout("x3") context => _, options(nostack))
    };
    status as i64
}

/// Resets the whole machine through its firmware (PSCI SYSTEM_RESET); returns only if the
/// firmware refused.
pub fn system_reset() {
    // SAFETY: SYSTEM_RESET takes no arguments and does not return when it works; SMCCC preserves
    // X4-X17 and the stack otherwise (DEN 0028, 2.6).
    unsafe {
        core::arch::asm!("smc #0", inlateout("x0") u64::from(SYSTEM_RESET) => _,
                         lateout("x1") _, lateout("x2") _, lateout("x3") _, options(nostack))
    };
}
