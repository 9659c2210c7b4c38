//! Ending a run: the emulators report a status the test harness checks.

use core::sync::atomic::{AtomicU8, Ordering};

use tandem_core::config::ExitDevice;

use crate::io::{halt_forever, outb, outl};
use crate::{console, logger};

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
    console::drain();
    match DEVICE.load(Ordering::Relaxed) {
        BOCHS if success => {
            // SAFETY: `xchg bx, bx` is a no-op on hardware; Bochs stops in its debugger, which
            // the harness tells to quit.
            unsafe { core::arch::asm!("xchg bx, bx", options(nomem, nostack)) }
        }
        BOCHS => {
            for b in b"Shutdown" {
                // SAFETY: Bochs's shutdown port; the board says it is there.
                unsafe { outb(0x8900, *b) }
            }
        }
        QEMU => {
            let code = if success { 0x10 } else { 0x11 };
            // SAFETY: QEMU's isa-debug-exit at the port the board names.
            unsafe { outl(QEMU_PORT.load(Ordering::Relaxed), code) }
        }
        _ => {}
    }
    halt_forever()
}
