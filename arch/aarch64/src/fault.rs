//! What the vector table (`entry`) calls when EL2 itself takes an exception, on this CPU's
//! recovery stack: a synchronous exception or SError is a failure of the hypervisor, which starts
//! the recovery when it is armed and is otherwise reported, stopping the machine; a FIQ while a
//! recovery stops CPUs is its stop request (`stop`), which sends this CPU to the follower path;
//! any other FIQ is the watchdog's tick (`watchdog`), which starts the recovery on a CPU it finds
//! hung.

use tandem_recovery::cause::Detected;

use crate::backend::VirtBackend;
use crate::{boot, gic, panic, sysreg, watchdog};

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

/// A FIQ while no recovery stops CPUs, on the interrupted code's stack with its caller-saved
/// registers kept: acknowledges the Group 0 interrupt and returns to that code, ending a stale
/// stop request, unless the interrupt is a watchdog tick that finds this CPU hung. Then the
/// interrupted code is abandoned (PSTATE.F stays set from the exception, as for a follower) and
/// the recovery starts on this CPU's own stack reset to its top, as a stopped CPU's follower path
/// does.
#[unsafe(no_mangle)]
extern "C" fn group0_taken() {
    let iar = gic::acknowledge_group0();
    if gic::id(iar) >= gic::SPURIOUS {
        return;
    }
    // A stop request whose recovery has ended (STOP_PENDING is clear again).
    if gic::id(iar) == gic::STOP_SGI {
        gic::end_group0(iar);
        return;
    }
    let cpu = sysreg::cpu_index();
    if watchdog::take(iar, cpu) {
        boot::on_fresh_stack(cpu, hung_entry)
    }
}

/// A CPU the watchdog found hung, on a fresh stack: the recovery, which returns only if it is
/// not armed (the watchdog checks nothing before, so this is not expected).
extern "C" fn hung_entry(cpu: usize) -> ! {
    let at = watchdog::hung_at(cpu);
    tandem_hw::recover::recover::<VirtBackend>(Detected::Hang, cpu as u64, at);
    panic::fatal(format_args!(
        "CPU {cpu} hung in the hypervisor at {at:#x}, with recovery not armed"
    ))
}
