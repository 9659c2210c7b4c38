//! A panic in the hypervisor is a failure of the hypervisor, reported on the emergency path.

use crate::console::Console;
use crate::{apic, machine};

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    Console::emergency(format_args!("panic on CPU {}: {}", apic::cpu_index(), info));
    machine::exit(false)
}
