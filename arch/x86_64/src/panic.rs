//! A panic in the hypervisor is a failure of the hypervisor, reported on the emergency path.

use crate::{apic, console, machine};

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    console::emergency(format_args!("panic on CPU {}: {}", apic::cpu_index(), info));
    machine::exit(false)
}
