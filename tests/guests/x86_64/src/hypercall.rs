//! The Tandem hypercall ABI from the guest side, over VMCALL (see `tandem_core::hypercall`).

use core::arch::asm;

use tandem_guest_common::abi::SHUTDOWN;

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
