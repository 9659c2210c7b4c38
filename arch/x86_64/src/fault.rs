//! An exception in hypervisor context: a failure of the hypervisor. With recovery armed it
//! starts the recovery (on the exception's own IST stack, `cpu`); otherwise it is reported with
//! its vector, RIP and CPU, and the machine stops.

use tandem_recovery::cause::Detected;
use x86_64::registers::control::Cr2;

use crate::backend::PcBackend;
use crate::console::Console;
use crate::cpu::ExceptionFrame;
use crate::{apic, machine};

const NAMES: [&str; 32] = [
    "divide error",
    "debug",
    "NMI",
    "breakpoint",
    "overflow",
    "bound range",
    "invalid opcode",
    "device not available",
    "double fault",
    "coprocessor overrun",
    "invalid TSS",
    "segment not present",
    "stack fault",
    "general protection",
    "page fault",
    "reserved",
    "x87 error",
    "alignment check",
    "machine check",
    "SIMD error",
    "virtualization",
    "control protection",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "hypervisor injection",
    "VMM communication",
    "security",
    "reserved",
];

#[unsafe(no_mangle)]
extern "C" fn exception_entry(frame: &ExceptionFrame) -> ! {
    let cr2 = Cr2::read_raw();
    let vector = frame.vector as usize;
    tandem_hw::recover::recover::<PcBackend>(Detected::Exception, frame.vector, frame.rip);
    Console::emergency(format_args!(
        "exception {} ({}) error {:#x} at RIP {:#x} RSP {:#x} CR2 {:#x} on CPU {}",
        vector,
        NAMES.get(vector).copied().unwrap_or("unknown"),
        frame.error_code,
        frame.rip,
        frame.rsp,
        cr2,
        apic::cpu_index()
    ));
    machine::exit(false)
}
