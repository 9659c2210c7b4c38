//! The x86_64 half of recovery (`tandem_hw::recovery`): stopping CPUs with NMIs, fresh stacks,
//! the pristine copy of the image, the full reset, and the planned fault injections.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use tandem_core::config::MAX_CPUS;
use tandem_core::journal::MAX_GPRS;
use tandem_hw::frames;
use tandem_hw::recovery::control::Control;
use tandem_hw::recovery::trigger;
use tandem_hw::recovery::{pristine, targets};
use tandem_recovery::cause::ResetCause;
use tandem_recovery::inject::Model;
use x86_64::instructions::port::PortWriteOnly;
use x86_64::registers::control::{Cr0, Cr0Flags};

use crate::vmx::VcpuState;
use crate::{apic, boot, cpu};

/// Set while a recovery stops CPUs: the NMI handler then sends its CPU to the follower path
/// instead of returning.
#[unsafe(no_mangle)]
static RECOVERY_PENDING: AtomicU32 = AtomicU32::new(0);

/// Where the follower path starts, as the NMI handler's patched return address.
static FOLLOW: AtomicU64 = AtomicU64::new(0);

pub fn set_follow(entry: extern "C" fn(usize) -> !) {
    FOLLOW.store(entry as usize as u64, Ordering::Release);
}

/// NMIs to every CPU in `mask`; their handler sees [`RECOVERY_PENDING`].
pub fn stop_cpus(mask: u32) {
    RECOVERY_PENDING.store(1, Ordering::Release);
    crate::nmi_watchdog::check_nmis();
    for cpu in 0..MAX_CPUS {
        if mask & (1 << cpu) != 0 {
            apic::send_nmi(cpu as u32);
        }
    }
}

/// The interrupt frame the NMI handler returns through.
#[repr(C)]
pub struct IretFrame {
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

/// Where a CPU that finds itself hung starts the recovery, as the NMI handler's patched return
/// address.
static HANG: AtomicU64 = AtomicU64::new(0);

pub fn set_hang(entry: extern "C" fn(usize) -> !) {
    HANG.store(entry as usize as u64, Ordering::Release);
}

/// From the NMI stub once recovery is armed: a recovery is stopping this CPU, or the NMI
/// watchdog finds it hung. Then its IRET (which ends NMI blocking, the "NMI ack" of recovery.md
/// 2.3) goes to the follower path or to the start of a recovery, on this CPU's stack reset to
/// its top, interrupts masked, the CPU index as argument; returns that index. Otherwise returns
/// `u64::MAX` and the interrupted code goes on. `rcx` is the interrupted code's RCX: a CPU
/// abandoned between a console byte's `out` and its count's `inc` (`serial`'s
/// `write_counted`) has the count's address there, and the count is completed so the byte is
/// not printed again.
#[unsafe(no_mangle)]
extern "C" fn nmi_check(frame: &mut IretFrame, rcx: u64) -> u64 {
    let cpu = apic::cpu_index();
    let stopping = RECOVERY_PENDING.load(Ordering::Acquire) != 0;
    let target = if stopping && tandem_hw::recovery::owner() == Some(cpu) {
        // The recovery's owner only takes watchdog ticks meanwhile: nothing to do.
        return u64::MAX;
    } else if stopping {
        follow_trampoline as *const () as u64
    } else if crate::nmi_watchdog::hung(cpu) {
        hang_trampoline as *const () as u64
    } else {
        return u64::MAX;
    };
    if frame.rip == counted_byte_written as *const () as u64 {
        // SAFETY: at that instruction RCX holds the `&mut u32` `write_counted` was lent, and
        // the code that held it is abandoned here.
        unsafe { *(rcx as *mut u32) += 1 };
    }
    frame.rip = target;
    frame.rsp = stack_top(cpu) - 8;
    frame.rflags = 0x2;
    cpu as u64
}

/// The stop is over: every CPU the recovery stopped has arrived, and later NMIs (a stop NMI
/// still pending behind a watchdog tick, the next ticks) are ordinary again.
pub fn stop_done() {
    RECOVERY_PENDING.store(0, Ordering::Release);
}

unsafe extern "C" {
    fn follow_trampoline();
    fn hang_trampoline();
    /// The `inc` after a console byte's `out` (`serial`).
    fn counted_byte_written();
}

core::arch::global_asm!(
    r#"
    .section .text.recovery, "ax"
    .global follow_trampoline, hang_trampoline
follow_trampoline:
    mov rdi, rax
    jmp [rip + {follow}]
hang_trampoline:
    mov rdi, rax
    jmp [rip + {hang}]
"#,
    follow = sym FOLLOW,
    hang = sym HANG,
);

/// The top of CPU `cpu`'s own stack (the boot stack for the bootstrap CPU).
pub fn stack_top(cpu: usize) -> u64 {
    if cpu == 0 {
        boot::stack_top()
    } else {
        cpu::ap_stack_top(cpu)
    }
}

/// Runs `f(cpu)` on CPU `cpu`'s stack reset to its top.
pub fn on_fresh_stack(cpu: usize, f: extern "C" fn(usize) -> !) -> ! {
    // SAFETY: the stack belongs to this CPU and whatever ran on it is abandoned (the caller's
    // point); `f` never returns, so nothing pops past the top.
    unsafe {
        core::arch::asm!(
            "mov rsp, {top}",
            "call {f}",
            "ud2",
            top = in(reg) stack_top(cpu) - 8,
            f = in(reg) f,
            in("rdi") cpu,
            options(noreturn)
        )
    }
}

/// For a recovery: this CPU's vCPU into its slot, and out of VMX operation.
pub fn capture_vcpu(cpu: usize, state: &mut VcpuState) -> bool {
    crate::vmx::capture_current(cpu, state)
}

pub fn roll_back(state: &mut VcpuState, rip: u64, gprs: &[u64; MAX_GPRS]) {
    state.roll_back_gprs(gprs);
    state.set_captured_rip(rip);
}

/// The image's code and read-only data, `[start, data)`, which the pristine copy holds.
fn code_range() -> (u64, u64) {
    (boot::image_range().0, boot::data_start())
}

/// Cold boot: the pristine copy of the code and read-only data; returns the bytes kept.
pub fn keep_pristine(control: &Control) -> Result<u64, frames::OutOfFrames> {
    let (start, end) = code_range();
    let kept = pristine::keep(control, start, end)?;
    if let Some(copy) = pristine::copy_address() {
        boot::map_read_only(copy, kept)?;
    }
    Ok(kept)
}

/// Writes to read-only pages (the image's code, the pristine copy) with CR0.WP off (SDM Vol. 3A,
/// 5.1.3), on this CPU only, while every other CPU is stopped or, for an injection, to mimic a
/// write the map cannot stop.
fn with_read_only_writable(f: impl FnOnce()) {
    // SAFETY: clearing WP only lets this CPU write read-only pages; the others are stopped, and
    // WP comes back before anything else runs.
    unsafe { Cr0::update(|c| c.remove(Cr0Flags::WRITE_PROTECT)) };
    f();
    // SAFETY: as above.
    unsafe { Cr0::update(|c| c.insert(Cr0Flags::WRITE_PROTECT)) };
}

/// Puts the code back: from the pristine copy once its hash checks (`reload`), or only the byte
/// an injection flipped.
pub fn repair_code(control: &Control, reload: bool) -> Result<(), ResetCause> {
    let at = control.repair_at.swap(0, Ordering::AcqRel);
    if reload {
        let (start, end) = code_range();
        let pristine = pristine::checked(control, start, end)?;
        let len = end - start;
        // SAFETY: the image's code range, `len` bytes (whole pages), written with WP off; the
        // copy holds what was there at cold boot, so the code running now (this function) is
        // unchanged by it. `rep movsq` because it is one instruction per word where the
        // emulators count instructions (DF is clear in the hypervisor).
        with_read_only_writable(|| unsafe {
            core::arch::asm!(
                "rep movsq",
                inout("rcx") len / 8 => _,
                inout("rsi") pristine.as_ptr() => _,
                inout("rdi") start => _,
                options(nostack, preserves_flags)
            )
        });
    } else if at != 0 {
        let byte = control.repair_byte.load(Ordering::Relaxed) as u8;
        // SAFETY: `at - 1` is a byte of the image's code an injection flipped.
        with_read_only_writable(|| unsafe { ((at - 1) as *mut u8).write_volatile(byte) });
    }
    Ok(())
}

/// Resets the machine: the PCI reset control register, then the keyboard controller's reset
/// line, then a triple fault (an empty IDT) if neither was there.
pub fn full_reset() -> ! {
    crate::logger::drain();
    // SAFETY: ports the PC platform defines for a reset; the machine is being reset anyway.
    unsafe {
        PortWriteOnly::<u8>::new(0xcf9).write(0x06);
        PortWriteOnly::<u8>::new(0x64).write(0xfe);
        let empty = x86_64::structures::DescriptorTablePointer {
            limit: 0,
            base: x86_64::VirtAddr::new(0),
        };
        x86_64::instructions::tables::lidt(&empty);
        core::arch::asm!("int3", options(noreturn));
    }
}

/// Hypervisor instructions still to single-step on each CPU before the fault (register and code
/// models), and the guest's DR6, which each single-step trap overwrites.
static STEPS_LEFT: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static GUEST_DR6: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Set once any CPU steps, so a VM entry checks nothing more until then.
static STEPPING: AtomicBool = AtomicBool::new(false);

/// CPU `cpu`'s `beats`th pass: fires the planned fault if it is due here, or goes on
/// single-stepping towards it.
pub fn inject_at(cpu: usize, beats: u64) {
    if STEPS_LEFT[cpu].load(Ordering::Relaxed) != 0 {
        set_trap_flag(true);
        return;
    }
    let Some(plan) = trigger::due(cpu, beats) else {
        return;
    };
    let mut rng = plan.rng();
    let now = crate::time::now_ns();
    if plan.model.steps() {
        trigger::report_armed(plan, cpu, now);
        GUEST_DR6[cpu].store(read_dr6(), Ordering::Relaxed);
        STEPS_LEFT[cpu].store(plan.steps + 1, Ordering::Relaxed);
        STEPPING.store(true, Ordering::Relaxed);
        set_trap_flag(true);
        return;
    }
    let what = plan.model.name();
    let at = inject_at as *const () as u64;
    match plan.model {
        Model::Memory => flip_memory(&mut rng, cpu, now),
        Model::Failstop => {
            injected(what, cpu, at, now);
            panic!("injected failstop")
        }
        Model::PageFault => {
            injected(what, cpu, at, now);
            // SAFETY: deliberately faults: 64 GiB is beyond the 4 GiB identity map.
            let _ = unsafe { core::ptr::read_volatile(0x10_0000_0000 as *const u64) };
        }
        Model::Undefined => {
            injected(what, cpu, at, now);
            // SAFETY: deliberately raises #UD.
            unsafe { core::arch::asm!("ud2", options(nomem, nostack)) }
        }
        Model::Hang => {
            injected(what, cpu, at, now);
            x86_64::instructions::interrupts::disable();
            loop {
                core::hint::spin_loop();
            }
        }
        Model::Pristine => {
            injected(what, cpu, at, now);
            if let Some(copy) = pristine::copy_address() {
                // SAFETY: a byte of the pristine copy, the hypervisor's own frame, mapped
                // read-only: the model stands for a write the map does not stop (a device's
                // DMA, a flip in the memory itself).
                with_read_only_writable(|| unsafe {
                    (copy as *mut u8).write_volatile(!(copy as *const u8).read())
                });
            }
            panic!("injected failstop after corrupting the pristine image")
        }
        Model::PristineWrite => {
            injected(what, cpu, at, now);
            if let Some(copy) = pristine::copy_address() {
                // SAFETY: a byte of the pristine copy, written with the value it holds: the
                // copy is unchanged even where the map lets the write through (the bug this
                // tests for); mapped read-only, it faults.
                unsafe { (copy as *mut u8).write_volatile((copy as *const u8).read_volatile()) };
            }
        }
        Model::Register | Model::Code => {}
    }
}

fn injected(what: &str, cpu: usize, rip: u64, now: u64) {
    defmt::warn!(
        "injected: {=str} on CPU {=usize} at RIP {=u64:#x} ({=u64} ns)",
        what,
        cpu,
        rip,
        now
    );
}

/// Sets or clears RFLAGS.TF on this CPU: with it set, every instruction traps to [`debug_step`]
/// (SDM Vol. 3B, 18.3.1.4).
fn set_trap_flag(on: bool) {
    // SAFETY: only RFLAGS.TF changes; the #DB handler is installed (`cpu::init_idt`).
    unsafe {
        if on {
            core::arch::asm!("pushfq", "or qword ptr [rsp], 0x100", "popfq");
        } else {
            core::arch::asm!("pushfq", "and qword ptr [rsp], ~0x100", "popfq");
        }
    }
}

/// Before a VM entry: stepping stops (a host single-step trap must not meet the entry); the next
/// pass through the exit loop goes on counting.
pub fn pause_stepping() {
    if STEPPING.load(Ordering::Relaxed)
        && STEPS_LEFT[apic::cpu_index()].load(Ordering::Relaxed) != 0
    {
        set_trap_flag(false);
    }
}

fn read_dr6() -> u64 {
    let dr6: u64;
    // SAFETY: reading DR6 at CPL 0 has no effect.
    unsafe { core::arch::asm!("mov {}, dr6", out(reg) dr6, options(nomem, nostack)) };
    dr6
}

/// The single-step trap, from `cpu`'s #DB stub: counts down, then corrupts the interrupted
/// context (register model) or the next instruction's bytes (code model) and stops stepping.
#[unsafe(no_mangle)]
extern "C" fn debug_step(frame: &mut cpu::ExceptionFrame) {
    let cpu = apic::cpu_index();
    // SAFETY: DR6 holds the guest's value between entries (the hypervisor never switches it);
    // the trap set BS in it, which is put back.
    unsafe {
        core::arch::asm!("mov dr6, {}", in(reg) GUEST_DR6[cpu].load(Ordering::Relaxed), options(nomem, nostack))
    };
    let left = STEPS_LEFT[cpu].load(Ordering::Relaxed);
    if left == 0 {
        frame.rflags &= !0x100;
        return;
    }
    // The fault is reported in the log before it takes effect; with the log held (perhaps by
    // the code stepped here) that would deadlock this CPU, so the fault waits for the first
    // step with the log free.
    if left == 1 && crate::logger::log_busy() {
        return;
    }
    STEPS_LEFT[cpu].store(left - 1, Ordering::Relaxed);
    if left > 1 {
        return;
    }
    frame.rflags &= !0x100;
    let Some(plan) = trigger::plan() else { return };
    let mut rng = plan.rng();
    let now = crate::time::now_ns();
    let rip = frame.rip;
    match plan.model {
        Model::Register => {
            let (which, bit) = (rng.below(18) as usize, rng.below(64) as u32);
            let name = match which {
                0..15 => {
                    frame.gprs[which] ^= 1 << bit;
                    GPR_NAMES[which]
                }
                15 => {
                    frame.rsp ^= 1 << bit;
                    "rsp"
                }
                16 => {
                    frame.rflags ^= 1 << bit;
                    "rflags"
                }
                _ => {
                    frame.rip ^= 1 << bit;
                    "rip"
                }
            };
            defmt::warn!(
                "injected: register {=str} bit {=u32} on CPU {=usize} at RIP {=u64:#x} ({=u64} ns)",
                name,
                bit,
                cpu,
                rip,
                now
            );
        }
        Model::Code => {
            let (offset, bit) = (rng.below(15), rng.below(8) as u32);
            let at = rip + offset;
            let (start, end) = code_range();
            if !(start..end).contains(&at) {
                return;
            }
            // Reported before the flip: another CPU may run the flipped code at once, fail,
            // and stop this one before a report made after it.
            defmt::warn!(
                "injected: code bit {=u32} of the byte at {=u64:#x} on CPU {=usize} at RIP {=u64:#x} ({=u64} ns)",
                bit,
                at,
                cpu,
                rip,
                now
            );
            // SAFETY: `at` is a byte of the image's code.
            let byte = unsafe { (at as *const u8).read_volatile() };
            pristine::keep_for_repair(at, byte);
            // SAFETY: as above; the flip is the injected fault, repaired once detected.
            with_read_only_writable(|| unsafe {
                (at as *mut u8).write_volatile(byte ^ (1 << bit))
            });
        }
        _ => {}
    }
}

/// The names of the general registers in the order the exception stubs save them.
const GPR_NAMES: [&str; 15] = [
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14",
    "r15",
];

/// The memory model: one bit of the ledger, the image's data and `.bss`, this CPU's stack, or a
/// guest-state field of the current VMCS.
fn flip_memory(rng: &mut tandem_recovery::inject::Rng, cpu: usize, now: u64) {
    let bit = rng.below(64) as u32;
    let which = rng.below(4);
    let rsp: u64;
    // SAFETY: reads the stack pointer.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack)) };
    let data = (boot::data_start(), boot::image_range().1);
    let (region, at) = match targets::common_word(rng, which, data, rsp) {
        Some(target) => target,
        None => {
            let which = rng.below(64);
            let field = crate::vmx::flip_field(which, bit).unwrap_or(0);
            defmt::warn!(
                "injected: memory bit {=u32} of VMCS field {=u32:#x} on CPU {=usize} at RIP {=u64:#x} ({=u64} ns)",
                bit,
                field,
                cpu,
                inject_at as *const () as u64,
                now
            );
            return;
        }
    };
    defmt::warn!(
        "injected: memory bit {=u32} of the {=str} at {=u64:#x} on CPU {=usize} at RIP {=u64:#x} ({=u64} ns)",
        bit,
        region,
        at,
        cpu,
        inject_at as *const () as u64,
        now
    );
    // SAFETY: `at` is an aligned word of the hypervisor's own writable memory (its ledger, data,
    // `.bss` or stack), identity-mapped: corrupting it is the injected fault.
    unsafe {
        let word = at as *mut u64;
        word.write_volatile(word.read_volatile() ^ (1 << bit));
    }
}
