//! Faults injected into the hypervisor on purpose (recovery.md 5.3), as planned by the boot
//! command line's `inject=model:M,...` (`tandem_recovery::inject`): fired once, on the planned
//! CPU at its planned pass through the exit loop, or (register and code models) that many
//! single-stepped instructions later (`step`).

use aarch64_cpu::registers::VTTBR_EL2;
use tandem_hw::recovery::{pristine, targets, trigger};
use tandem_recovery::inject::{Model, Rng};

use crate::{boot, el2_map, step, time};

/// An address the EL2 map leaves out: it covers the first 4 GiB (`boot`), so a load from 64 GiB
/// takes a translation fault at EL2.
const UNMAPPED: u64 = 0x10_0000_0000;

/// CPU `cpu`'s `beats`th pass: fires the planned fault if it is due here.
pub fn inject_at(cpu: usize, beats: u64) {
    if step::resume(cpu) {
        return;
    }
    let Some(plan) = trigger::due(cpu, beats) else {
        return;
    };
    if plan.model.steps() {
        trigger::report_armed(plan, cpu, time::now_ns());
        step::arm(cpu, plan.steps);
        return;
    }
    if plan.model == Model::Memory {
        flip_memory(&mut plan.rng(), cpu);
        return;
    }
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
            if let Some(copy) = pristine::copy_address() {
                // SAFETY: a byte of the pristine copy, the hypervisor's own frame, made
                // writable for the write.
                el2_map::with_writable(copy, || unsafe {
                    (copy as *mut u8).write_volatile(!(copy as *const u8).read())
                });
            }
            panic!("injected failstop after corrupting the pristine image")
        }
        Model::PristineWrite => {
            if let Some(copy) = pristine::copy_address() {
                // SAFETY: a byte of the pristine copy, written with the value it holds: the
                // copy is unchanged even where the map lets the write through (the bug this
                // tests for); mapped read-only, it faults.
                unsafe { (copy as *mut u8).write_volatile((copy as *const u8).read_volatile()) };
            }
        }
        Model::Register | Model::Code | Model::Memory => {}
    }
}

/// The memory model: one bit of the ledger, the image's data and `.bss`, this CPU's stack, or
/// the vCPU's stage-2 root table (the nearest thing to x86's VMCS that lives in memory: EL1's
/// registers live in the CPU).
fn flip_memory(rng: &mut Rng, cpu: usize) {
    let bit = rng.below(64) as u32;
    let which = rng.below(4);
    let sp: u64;
    // SAFETY: reads the stack pointer.
    unsafe { core::arch::asm!("mov {}, sp", out(reg) sp, options(nomem, nostack)) };
    let data = (boot::data_start(), boot::image_range().1);
    let (region, at) = targets::common_word(rng, which, data, sp).unwrap_or_else(|| {
        let root = VTTBR_EL2.get_baddr();
        ("stage-2 root table", root + rng.below(512) * 8)
    });
    defmt::warn!(
        "injected: memory bit {=u32} of the {=str} at {=u64:#x} on CPU {=usize} at PC {=u64:#x} ({=u64} ns)",
        bit,
        region,
        at,
        cpu,
        inject_at as *const () as u64,
        time::now_ns()
    );
    // SAFETY: `at` is an aligned word of the hypervisor's own memory (its ledger, data, `.bss`,
    // stack or a stage-2 table), writable in the EL2 map: corrupting it is the injected fault.
    unsafe {
        let word = at as *mut u64;
        word.write_volatile(word.read_volatile() ^ (1 << bit));
    }
}
