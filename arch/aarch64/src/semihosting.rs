//! Arm semihosting (Arm DUI 0058, "Semihosting for AArch32 and AArch64"): `HLT #0xF000` with the
//! operation in W0 and a parameter block in X1. QEMU implements it when started with
//! `-semihosting`; it works from EL2. Tandem uses it to end a run with a status and to write the
//! defmt log to a host file, since the `virt` machine has a single UART.

use core::ffi::CStr;

const SYS_OPEN: u64 = 0x01;
const SYS_WRITE: u64 = 0x05;
const SYS_EXIT: u64 = 0x18;
/// `ADP_Stopped_ApplicationExit`: SYS_EXIT's reason for a normal exit with a status.
const APPLICATION_EXIT: u64 = 0x2_0026;
/// SYS_OPEN mode 5 is "wb".
const MODE_WRITE_BINARY: u64 = 5;

fn call(op: u64, params: &[u64]) -> u64 {
    let result: u64;
    // SAFETY: the semihosting trap reads `params` (and the memory it points at) and writes only X0;
    // every pointer in `params` is valid for the length given with it.
    unsafe {
        core::arch::asm!("hlt #0xf000", inlateout("x0") op => result, in("x1") params.as_ptr(),
                         options(nostack))
    };
    result
}

/// Opens `name` (a path on the host) for binary writing; `None` if the host refused. The name
/// must be NUL-terminated even though its length is passed too: QEMU reads length + 1 bytes and
/// refuses a name whose last byte is not NUL.
pub fn open_for_writing(name: &CStr) -> Option<u64> {
    let handle = call(
        SYS_OPEN,
        &[
            name.as_ptr() as u64,
            MODE_WRITE_BINARY,
            name.count_bytes() as u64,
        ],
    );
    (handle as i64 >= 0).then_some(handle)
}

/// Writes `bytes` to an open handle.
pub fn write(handle: u64, bytes: &[u8]) {
    call(
        SYS_WRITE,
        &[handle, bytes.as_ptr() as u64, bytes.len() as u64],
    );
}

/// Ends the emulator with `code` as its exit status.
pub fn exit(code: u32) -> ! {
    call(SYS_EXIT, &[APPLICATION_EXIT, code.into()]);
    loop {
        core::hint::spin_loop();
    }
}
