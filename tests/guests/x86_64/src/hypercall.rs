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

/// VMCALL with `nr` and four arguments; returns (status, value).
pub fn call(nr: u64, a: [u64; 4]) -> (i64, u64) {
    let (status, value): (u64, u64);
    // SAFETY: VMCALL exits to the hypervisor, which returns in RAX and RDX.
    unsafe {
        asm!("vmcall", inlateout("rax") nr => status, in("rdi") a[0], in("rsi") a[1],
             inlateout("rdx") a[2] => value, in("r10") a[3], options(nostack))
    }
    (status as i64, value)
}

pub fn shutdown(code: u64) -> ! {
    call(SHUTDOWN, [code, 0, 0, 0]);
    loop {
        // SAFETY: never reached: SHUTDOWN does not return.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
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
