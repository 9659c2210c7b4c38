//! Ending a run: the emulators report a status the test harness checks.

use core::sync::atomic::{AtomicU8, Ordering};

use tandem_core::config::ExitDevice;

use x86_64::instructions::bochs_breakpoint;
use x86_64::instructions::port::PortWriteOnly;

use crate::console::Console;
use crate::io::halt_forever;
use crate::logger;

/// Bochs's shutdown port: writing "Shutdown" to it ends the emulation.
const BOCHS_SHUTDOWN_PORT: u16 = 0x8900;

const UNSET: u8 = 0;
const BOCHS: u8 = 1;
const QEMU: u8 = 2;

static DEVICE: AtomicU8 = AtomicU8::new(UNSET);
static QEMU_PORT: core::sync::atomic::AtomicU16 = core::sync::atomic::AtomicU16::new(0);

pub fn init(dev: ExitDevice) {
    match dev {
        ExitDevice::Bochs => DEVICE.store(BOCHS, Ordering::Relaxed),
        ExitDevice::QemuDebugExit { port } => {
            QEMU_PORT.store(port, Ordering::Relaxed);
            DEVICE.store(QEMU, Ordering::Relaxed);
        }
        ExitDevice::Semihosting | ExitDevice::Halt => {}
    }
}

/// Stops the machine after draining both UARTs. `success` is what the emulator reports: Bochs
/// exits 0 through the magic breakpoint or 1 through its shutdown port; QEMU's `isa-debug-exit`
/// exits 33 or 35.
pub fn exit(success: bool) -> ! {
    logger::drain();
    Console::drain();
    match DEVICE.load(Ordering::Relaxed) {
        // `xchg bx, bx` is a no-op on hardware; Bochs stops in its debugger, which the harness
        // tells to quit.
        BOCHS if success => bochs_breakpoint(),
        BOCHS => {
            let mut port = PortWriteOnly::<u8>::new(BOCHS_SHUTDOWN_PORT);
            for b in b"Shutdown" {
                // SAFETY: Bochs's shutdown port; the board says it is there.
                unsafe { port.write(*b) }
            }
        }
        QEMU => {
            let code: u32 = if success { 0x10 } else { 0x11 };
            // SAFETY: QEMU's isa-debug-exit at the port the board names.
            unsafe { PortWriteOnly::new(QEMU_PORT.load(Ordering::Relaxed)).write(code) }
        }
        _ => {}
    }
    halt_forever()
}
