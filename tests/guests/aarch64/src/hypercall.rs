//! The Tandem hypercall ABI from the guest side (see `tandem_core::hypercall`).

use core::arch::asm;

pub const ABI_VERSION: u64 = 0;
pub const CONSOLE_WRITE: u64 = 1;
pub const PARTITION_INFO: u64 = 2;
pub const YIELD: u64 = 3;
pub const SHUTDOWN: u64 = 4;
pub const TIMER_SET: u64 = 5;
pub const TIME_NOW: u64 = 6;

pub const E_NOSYS: i64 = -1;
pub const E_INVALID: i64 = -2;
pub const E_FAULT: i64 = -3;

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
pub const PSCI_CPU_ON: u64 = 0xc400_0003;
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

pub fn timer_set(delay_ns: u64, vector: u64) -> (i64, u64) {
    call(TIMER_SET, [delay_ns, vector, 0, 0])
}

pub fn time_now() -> u64 {
    call(TIME_NOW, [0; 4]).1
}

pub fn console_write(s: &[u8]) -> (i64, u64) {
    call(CONSOLE_WRITE, [s.as_ptr() as u64, s.len() as u64, 0, 0])
}

/// What `PARTITION_INFO` reports.
pub struct Info {
    pub id: u32,
    pub vcpus: u32,
    /// How many times the partition was restarted at its own request.
    pub resets: u32,
    pub memory: u64,
    buf: [u8; 104],
}

impl Info {
    fn text(bytes: &[u8]) -> &str {
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        core::str::from_utf8(&bytes[..end]).unwrap_or("?")
    }
    pub fn name(&self) -> &str {
        Self::text(&self.buf[24..40])
    }
    pub fn args(&self) -> &str {
        Self::text(&self.buf[40..104])
    }
}

pub fn partition_info() -> Info {
    let mut buf = [0u8; 104];
    let (status, _) = call(
        PARTITION_INFO,
        [buf.as_mut_ptr() as u64, buf.len() as u64, 0, 0],
    );
    assert_eq!(status, 0, "PARTITION_INFO failed");
    let word = |at: usize| u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    Info {
        id: word(4),
        vcpus: word(8),
        resets: word(12),
        memory: u64::from(word(16)) | u64::from(word(20)) << 32,
        buf,
    }
}

/// The value of `key=value` in the partition's argument string.
pub fn arg<'a>(args: &'a str, key: &str) -> Option<&'a str> {
    args.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}
