//! What the vector table (`entry`) calls when EL2 itself takes an exception, on this CPU's
//! recovery stack: a synchronous exception or SError is a failure of the hypervisor, which starts
//! the recovery when it is armed and is otherwise reported, stopping the machine; a FIQ while a
//! recovery stops CPUs is its stop request (`stop`), which sends this CPU to the follower path.

use tandem_recovery::cause::Detected;

use crate::backend::VirtBackend;
use crate::{boot, gic, panic, sysreg};

/// An exception taken at EL2 (`kind`: the vector's index, 0 synchronous, 3 SError).
#[unsafe(no_mangle)]
extern "C" fn hypervisor_fault(kind: u64, esr: u64, elr: u64, far: u64) -> ! {
    tandem_hw::recover::recover::<VirtBackend>(Detected::Exception, esr, elr);
    panic::fatal(format_args!(
        "exception in the hypervisor on CPU {}: kind {kind}, ESR_EL2 {esr:#x}, ELR_EL2 {elr:#x}, FAR_EL2 {far:#x}",
        sysreg::cpu_index()
    ))
}

/// The stop request, taken: acknowledged and ended (recovery.md 6.5: nothing is left active or
/// at a running priority), then the follower path on this CPU's own stack reset to its top.
#[unsafe(no_mangle)]
extern "C" fn stop_taken() -> ! {
    gic::take_stop();
    boot::on_fresh_stack(
        sysreg::cpu_index(),
        tandem_hw::recover::follower::<VirtBackend>(),
    )
}
