//! Faults injected into the hypervisor on purpose (recovery.md 5.3), as planned by the boot
//! command line's `inject=model:M,...` (`tandem_recovery::inject`): fired once, on the planned
//! CPU at its planned pass through the exit loop.

use core::sync::atomic::Ordering;

use tandem_hw::recovery::trigger;
use tandem_recovery::inject::Model;

use crate::time;

/// An address the EL2 map leaves out: it covers the first 4 GiB (`boot`), so a load from 64 GiB
/// takes a translation fault at EL2.
const UNMAPPED: u64 = 0x10_0000_0000;

/// CPU `cpu`'s `beats`th pass: fires the planned fault if it is due here.
pub fn inject_at(cpu: usize, beats: u64) {
    let Some(plan) = trigger::due(cpu, beats) else {
        return;
    };
    defmt::warn!(
        "injected: {=str} on CPU {=usize} at PC {=u64:#x} ({=u64} ns)",
        plan.model.name(),
        cpu,
        inject_at as *const () as u64,
        time::now_ns()
    );
    match plan.model {
        Model::Failstop => panic!("injected failstop"),
        Model::PageFault => {
            // SAFETY: deliberately faults: the address is outside the EL2 map.
            let _ = unsafe { core::ptr::read_volatile(UNMAPPED as *const u64) };
        }
        Model::Undefined => {
            // SAFETY: deliberately raises an undefined-instruction exception at EL2.
            unsafe { core::arch::asm!("udf #0", options(nomem, nostack)) }
        }
        Model::Hang => {
            // SAFETY: masks IRQs (already masked at EL2; said again for the model's sake) and
            // spins for good: only the recovery's stop request, a FIQ, ends this. The spin hint
            // is YIELD, x86's PAUSE: QEMU's single-threaded round robin (-icount) moves to the
            // next CPU at a YIELD, where a loop without one (Rust's spin_loop() is an ISB here)
            // keeps the others from running until the emulator's next timer deadline, up to
            // 100 ms of virtual time per turn, and the buddy would see the hang only minutes of
            // wall time later.
            unsafe {
                core::arch::asm!(
                    "msr daifset, #2",
                    "1: yield",
                    "b 1b",
                    options(nomem, nostack, noreturn)
                )
            }
        }
        Model::Pristine => {
            if let Some(control) = tandem_hw::recovery::control() {
                let copy = control.pristine[0].load(Ordering::Relaxed);
                if copy != 0 {
                    // SAFETY: a byte of the pristine copy, the hypervisor's own frame.
                    unsafe { (copy as *mut u8).write_volatile(!(copy as *const u8).read()) };
                }
            }
            panic!("injected failstop after corrupting the pristine image")
        }
        Model::Register | Model::Code | Model::Memory => {
            defmt::warn!(
                "injection model {=str} is not implemented on aarch64",
                plan.model.name()
            )
        }
    }
}
