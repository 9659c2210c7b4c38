//! A panic in the hypervisor is a failure of the hypervisor, reported on the emergency path.

use tandem_recovery::cause::Detected;

use crate::backend::PcBackend;
use crate::console::Console;
use crate::{apic, machine};

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    tandem_hw::recovery::note_message(format_args!("{info}"));
    tandem_hw::recover::recover::<PcBackend>(Detected::Panic, 0, 0);
    Console::emergency(format_args!("panic on CPU {}: {}", apic::cpu_index(), info));
    machine::exit(false)
}
