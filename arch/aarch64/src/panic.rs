//! A panic or an exception in the hypervisor is a failure of the hypervisor: with recovery armed
//! it starts the recovery, otherwise it is reported on the emergency path and the machine stops.

use tandem_recovery::cause::Detected;

use crate::backend::VirtBackend;
use crate::console::Console;
use crate::{machine, stop, sysreg};

/// Reports a failure of the hypervisor and ends the run with a failure status.
pub fn fatal(args: core::fmt::Arguments<'_>) -> ! {
    Console::emergency(args);
    machine::exit(false)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    // A panic is not an exception: PSTATE.F may be clear, and this CPU must not take the stop
    // request it is about to send the others, or one sent to it by a recovery already under way
    // (it follows that one by itself).
    stop::block();
    tandem_hw::recovery::note_message(format_args!("{info}"));
    tandem_hw::recover::recover::<VirtBackend>(Detected::Panic, 0, 0);
    fatal(format_args!(
        "panic on CPU {}: {}",
        sysreg::cpu_index(),
        info
    ))
}
