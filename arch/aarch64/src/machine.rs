//! Ending a run: QEMU exits with the status the hypervisor gives through semihosting SYS_EXIT.

use core::sync::atomic::{AtomicBool, Ordering};

use aarch64_cpu::asm::wfe;

use tandem_core::config::ExitDevice;

use crate::console::Console;
use crate::{logger, psci, semihosting};

static SEMIHOSTING: AtomicBool = AtomicBool::new(false);

pub fn init(dev: ExitDevice) {
    SEMIHOSTING.store(dev == ExitDevice::Semihosting, Ordering::Relaxed);
}

/// Stops the machine after draining the UART: exit status 0 on success, 1 on failure. Without
/// semihosting (real hardware) the CPU parks.
pub fn exit(success: bool) -> ! {
    logger::drain();
    Console::drain();
    if SEMIHOSTING.load(Ordering::Relaxed) {
        semihosting::exit(if success { 0 } else { 1 })
    }
    park()
}

/// Resets the whole machine (a recovery gave up). Under an emulator whose run ends through
/// semihosting the run is ended with the failure status instead: QEMU started with `-no-reboot`
/// ends on PSCI SYSTEM_RESET with status 0, which would read as success. Elsewhere the firmware's
/// SYSTEM_RESET; should it refuse, the CPU parks.
pub fn reset() -> ! {
    if SEMIHOSTING.load(Ordering::Relaxed) {
        exit(false)
    }
    logger::drain();
    Console::drain();
    psci::system_reset();
    park()
}

/// Parks this CPU for good.
pub fn park() -> ! {
    // Interrupts are masked at EL2, so nothing runs afterwards.
    loop {
        wfe();
    }
}
