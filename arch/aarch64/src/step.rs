//! Single-stepping the hypervisor towards a planned fault (the register and code models,
//! `tandem_recovery::inject`): K instructions of EL2 code after the planned exit, counted by
//! software-step exceptions taken to EL2 itself (Arm ARM D2.12).
//!
//! Stepping at EL2 needs the debug exceptions routed to EL2 (MDCR_EL2.TDE), enabled at the EL
//! they target (MDSCR_EL1.KDE with PSTATE.D clear) and the OS lock open (OSLAR_EL1), with
//! MDSCR_EL1.SS set. PSTATE.SS only changes at an exception return, so stepping starts with a
//! `BRK` whose handler returns to the next instruction with SPSR_EL2.SS set and D clear; each
//! step then traps before the following instruction, and its handler sets SPSR_EL2.SS again
//! until the count runs out. Guests never see any of it: their debug registers trap
//! (`debugregs`), and stepping pauses before every entry (`pause`), to go on at the next pass
//! through the exit loop, as x86's does around VM entries.
//!
//! An exclusive load and store pair stepped one at a time never succeeds (the exception return
//! between them clears the exclusive monitor), so an atomic loop spends steps retrying; the
//! count still runs out, and the loop completes once stepping stops.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use aarch64_cpu::registers::{MDCR_EL2, MDSCR_EL1, OSLAR_EL1, ReadWriteable, SPSR_EL2, Writeable};
use tandem_core::config::MAX_CPUS;
use tandem_hw::recovery::trigger;
use tandem_recovery::inject::Model;

use crate::{logger, pristine, sysreg, time};

/// The immediate of the `BRK` that starts stepping; any other `BRK` is a failure.
pub const BRK_STEP: u64 = 0x5a5;

/// Exception classes (ESR_EL2.EC, Arm ARM D19.2.44) the EL2 vector hands to [`step_taken`].
pub const EC_SOFTWARE_STEP_EL2: u64 = 0x33;
pub const EC_BRK: u64 = 0x3c;

/// The interrupted EL2 context, as the vector saves it (`entry`): what the register model
/// corrupts and the return puts back, the stack pointer included.
#[repr(C)]
pub struct StepFrame {
    x: [u64; 31],
    sp: u64,
    pc: u64,
    pstate: u64,
}

// The assembly in `entry` addresses the fields by offset.
const _: () = assert!(core::mem::offset_of!(StepFrame, sp) == 248);
const _: () = assert!(core::mem::size_of::<StepFrame>() == 272);

/// Hypervisor instructions still to step on each CPU before the fault.
static STEPS_LEFT: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Set once any CPU steps, so a guest entry checks nothing more until then.
static STEPPING: AtomicBool = AtomicBool::new(false);

/// Arms `steps` instructions of stepping on `cpu`, then starts.
pub fn arm(cpu: usize, steps: u64) {
    STEPS_LEFT[cpu].store(steps + 1, Ordering::Relaxed);
    STEPPING.store(true, Ordering::Relaxed);
    resume(cpu);
}

/// Goes on stepping on `cpu` if a count is under way (a pass through the exit loop after
/// [`pause`]); whether it was.
pub fn resume(cpu: usize) -> bool {
    if STEPS_LEFT[cpu].load(Ordering::Relaxed) == 0 {
        return false;
    }
    MDCR_EL2.modify(MDCR_EL2::TDE::SET);
    MDSCR_EL1.write(MDSCR_EL1::KDE::SET + MDSCR_EL1::SS::SET);
    OSLAR_EL1.write(OSLAR_EL1::OSLK::CLEAR);
    sysreg::isb();
    // SAFETY: the EL2 vector takes this BRK (`entry`, `step_taken`) and returns to the next
    // instruction; nothing else changes.
    unsafe { core::arch::asm!("brk #{imm}", imm = const BRK_STEP, options(nomem, nostack)) };
    true
}

/// Before a guest entry: no step may trap at the guest's first instruction.
pub fn pause() {
    if STEPPING.load(Ordering::Relaxed)
        && STEPS_LEFT[sysreg::cpu_index()].load(Ordering::Relaxed) != 0
    {
        stop();
    }
}

/// Ends stepping on this CPU; the guest-facing debug controls are as `vcpu::configure` set them.
fn stop() {
    MDSCR_EL1.set(0);
    MDCR_EL2.modify(MDCR_EL2::TDE::CLEAR);
    sysreg::isb();
}

/// From the EL2 vector (`entry`) for a software step or the starting `BRK`, on the interrupted
/// code's stack, with its registers in `frame`: counts down, then corrupts the interrupted
/// context (register model) or the bytes of the next instructions (code model).
#[unsafe(no_mangle)]
extern "C" fn step_taken(frame: &mut StepFrame, esr: u64) {
    let step = SPSR_EL2::SS::SET.value;
    if esr >> 26 == EC_BRK {
        frame.pc += 4;
        frame.pstate = (frame.pstate | step) & !SPSR_EL2::D::SET.value;
        return;
    }
    let cpu = sysreg::cpu_index();
    let left = STEPS_LEFT[cpu].load(Ordering::Relaxed);
    // The fault is reported in the log before it takes effect; with the log held (perhaps by
    // the code stepped here) that would deadlock this CPU, so the fault waits for the first
    // step with the log free.
    if left > 1 || (left == 1 && logger::log_busy()) {
        STEPS_LEFT[cpu].store(left.max(2) - 1, Ordering::Relaxed);
        frame.pstate |= step;
        return;
    }
    STEPS_LEFT[cpu].store(0, Ordering::Relaxed);
    stop();
    frame.pstate &= !step;
    if left == 1
        && let Some(plan) = trigger::plan()
    {
        corrupt(frame, plan.model, &mut plan.rng(), cpu);
    }
}

fn corrupt(
    frame: &mut StepFrame,
    model: Model,
    rng: &mut tandem_recovery::inject::Rng,
    cpu: usize,
) {
    let (pc, now) = (frame.pc, time::now_ns());
    match model {
        Model::Register => {
            let (which, bit) = (rng.below(34) as usize, rng.below(64) as u32);
            let name = match which {
                0..31 => {
                    frame.x[which] ^= 1 << bit;
                    GPR_NAMES[which]
                }
                31 => {
                    frame.sp ^= 1 << bit;
                    "sp"
                }
                32 => {
                    // SPSR_EL2 is 64 bits wide, but only its low half holds PSTATE.
                    frame.pstate ^= 1 << (bit % 32);
                    "pstate"
                }
                _ => {
                    frame.pc ^= 1 << bit;
                    "pc"
                }
            };
            defmt::warn!(
                "injected: register {=str} bit {=u32} on CPU {=usize} at PC {=u64:#x} ({=u64} ns)",
                name,
                bit,
                cpu,
                pc,
                now
            );
        }
        Model::Code => {
            // One bit of the next four instructions.
            let (offset, bit) = (rng.below(16), rng.below(8) as u32);
            let at = pc + offset;
            if pristine::is_code(at) {
                // Reported before the flip: another CPU may run the flipped code at once,
                // fail, and stop this one before a report made after it.
                defmt::warn!(
                    "injected: code bit {=u32} of the byte at {=u64:#x} on CPU {=usize} at PC {=u64:#x} ({=u64} ns)",
                    bit,
                    at,
                    cpu,
                    pc,
                    now
                );
                pristine::flip_code_bit(at, bit);
            }
        }
        _ => {}
    }
}

/// The general registers' names, in the frame's order.
const GPR_NAMES: [&str; 31] = [
    "x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13", "x14",
    "x15", "x16", "x17", "x18", "x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27",
    "x28", "x29", "x30",
];
