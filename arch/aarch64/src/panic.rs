//! A panic or an exception in the hypervisor is a failure of the hypervisor, reported on the
//! emergency path.

use crate::console::Console;
use crate::{machine, sysreg};

/// Reports a failure of the hypervisor and ends the run with a failure status.
pub fn fatal(args: core::fmt::Arguments<'_>) -> ! {
    Console::emergency(args);
    machine::exit(false)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    fatal(format_args!(
        "panic on CPU {}: {}",
        sysreg::cpu_index(),
        info
    ))
}
