//! The Tandem hypercall ABI from the guest side, over HVC (see `tandem_core::hypercall`), and PSCI.

use core::arch::asm;

use tandem_guest_common::abi::SHUTDOWN;

/// HVC #0 with `nr` and four arguments; returns (status, value).
pub fn call(nr: u64, a: [u64; 4]) -> (i64, u64) {
    let (status, value): (u64, u64);
    // SAFETY: HVC exits to the hypervisor, which returns in X0 and X1.
    unsafe {
        asm!("hvc #0", inlateout("x0") nr => status, inlateout("x1") a[0] => value,
             inlateout("x2") a[1] => _, inlateout("x3") a[2] => _, inlateout("x4") a[3] => _,
             options(nostack))
    }
    (status as i64, value)
}

pub const PSCI_VERSION: u64 = 0x8400_0000;
pub const PSCI_CPU_OFF: u64 = 0x8400_0002;
pub const PSCI_CPU_ON: u64 = 0xc400_0003;
pub const PSCI_AFFINITY_INFO: u64 = 0xc400_0004;
pub const PSCI_SYSTEM_OFF: u64 = 0x8400_0008;
pub const PSCI_SYSTEM_RESET: u64 = 0x8400_0009;

/// A PSCI call over HVC (the device tree's `method`); returns X0.
pub fn psci(function: u64, a: [u64; 3]) -> i64 {
    let r: u64;
    // SAFETY: HVC exits to the hypervisor, which returns in X0.
    unsafe {
        asm!("hvc #0", inlateout("x0") function => r, inlateout("x1") a[0] => _,
             inlateout("x2") a[1] => _, inlateout("x3") a[2] => _, options(nostack))
    }
    r as i64
}

/// The same PSCI call over SMC, which the hypervisor traps.
pub fn psci_smc(function: u64, a: [u64; 3]) -> i64 {
    let r: u64;
    // SAFETY: SMC traps to the hypervisor (HCR_EL2.TSC), which returns in X0.
    unsafe {
        asm!("smc #0", inlateout("x0") function => r, inlateout("x1") a[0] => _,
             inlateout("x2") a[1] => _, inlateout("x3") a[2] => _, options(nostack))
    }
    r as i64
}

pub fn shutdown(code: u64) -> ! {
    call(SHUTDOWN, [code, 0, 0, 0]);
    loop {
        // SAFETY: never reached: SHUTDOWN does not return.
        unsafe { asm!("wfi", options(nomem, nostack)) }
    }
}
