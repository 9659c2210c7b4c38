//! A second vCPU of the partition, started with PSCI CPU_ON at a Rust function of the guest's.

use core::sync::atomic::{AtomicPtr, Ordering};

use crate::hypercall::{self, PSCI_CPU_OFF, PSCI_CPU_ON, psci};
use crate::println;

unsafe extern "C" {
    /// The assembly entry in `lib.rs`: MMU and vectors on, secondary stack, then `guest_secondary`.
    fn guest_secondary_start();
}

static SECONDARY_MAIN: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Starts vCPU `target` (its MPIDR) running `main(context)`, `context` being the PSCI context ID;
/// it powers itself off (CPU_OFF) when `main` returns. Every vCPU started this way uses the same
/// stack, so one may run at a time. Returns the PSCI status.
pub fn start_cpu(target: u64, main: fn(u64), context: u64) -> i64 {
    SECONDARY_MAIN.store(main as *mut (), Ordering::SeqCst);
    psci(
        PSCI_CPU_ON,
        [target, guest_secondary_start as *const () as u64, context],
    )
}

#[unsafe(no_mangle)]
extern "C" fn guest_secondary(context: u64) -> ! {
    let main = SECONDARY_MAIN.load(Ordering::SeqCst);
    // SAFETY: `start_cpu` stored a `fn(u64)` before the CPU_ON that led here.
    let main: fn(u64) = unsafe { core::mem::transmute(main) };
    main(context);
    let status = psci(PSCI_CPU_OFF, [0; 3]);
    println!("ERROR: CPU_OFF returned {status}");
    hypercall::shutdown(0xdead)
}
