//! The x86_64 half of recovery (`tandem_hw::recovery`): stopping CPUs with NMIs, fresh stacks,
//! the pristine copy of the image, the full reset, and the planned fault injections.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use tandem_core::config::MAX_CPUS;
use tandem_core::journal::MAX_GPRS;
use tandem_hw::frames;
use tandem_hw::recovery::control::Control;
use tandem_recovery::cause::ResetCause;
use tandem_recovery::inject::{Model, Plan};
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

/// From the NMI stub while a recovery is pending: its IRET (which ends NMI blocking, the
/// "NMI ack" of recovery.md 2.3) goes to the follower path, on this CPU's stack reset to its
/// top, interrupts masked, with the CPU index as argument.
#[unsafe(no_mangle)]
extern "C" fn nmi_recovery_frame(frame: &mut IretFrame) -> u64 {
    let cpu = apic::cpu_index();
    frame.rip = follow_trampoline as *const () as u64;
    frame.rsp = stack_top(cpu) - 8;
    frame.rflags = 0x2;
    cpu as u64
}

unsafe extern "C" {
    fn follow_trampoline();
}

core::arch::global_asm!(
    r#"
    .section .text.recovery, "ax"
    .global follow_trampoline
follow_trampoline:
    mov rdi, rax
    jmp [rip + {follow}]
"#,
    follow = sym FOLLOW,
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

/// Cold boot: copies the code and read-only data to fresh frames and records where and their
/// CRC-32 in the control block.
pub fn keep_pristine(control: &Control) -> Result<u64, frames::OutOfFrames> {
    let (start, end) = code_range();
    let len = end - start;
    let copy = frames::alloc_contiguous(len)?;
    // SAFETY: `copy` is `len` bytes of fresh frames; the source is the image's own code and
    // read-only data, identity-mapped and readable.
    let bytes = unsafe {
        core::ptr::copy_nonoverlapping(start as *const u8, copy as *mut u8, len as usize);
        core::slice::from_raw_parts(copy as *const u8, len as usize)
    };
    control.pristine[0].store(copy, Ordering::Relaxed);
    control.pristine[1].store(len, Ordering::Relaxed);
    control
        .pristine_crc
        .store(tandem_core::bundle::crc32(bytes), Ordering::Relaxed);
    Ok(len)
}

/// Writes to the image's read-only code with CR0.WP off (SDM Vol. 3A, 5.1.3), on this CPU only,
/// while every other CPU is stopped.
fn with_code_writable(f: impl FnOnce()) {
    // SAFETY: clearing WP only lets this CPU write read-only pages; the others are stopped, and
    // WP comes back before anything else runs.
    unsafe { Cr0::update(|c| c.remove(Cr0Flags::WRITE_PROTECT)) };
    f();
    // SAFETY: as above.
    unsafe { Cr0::update(|c| c.insert(Cr0Flags::WRITE_PROTECT)) };
}

/// Puts the code back: from the pristine copy once its CRC checks (`reload`), or only the byte
/// an injection flipped.
pub fn repair_code(control: &Control, reload: bool) -> Result<(), ResetCause> {
    let at = control.repair_at.swap(0, Ordering::AcqRel);
    if reload {
        let (copy, len) = (
            control.pristine[0].load(Ordering::Relaxed),
            control.pristine[1].load(Ordering::Relaxed),
        );
        let (start, end) = code_range();
        if copy == 0 || len != end - start {
            return Err(ResetCause::PristineCorrupt);
        }
        // SAFETY: `keep_pristine` made `len` bytes at `copy`, which stay the hypervisor's.
        let pristine = unsafe { core::slice::from_raw_parts(copy as *const u8, len as usize) };
        if tandem_core::bundle::crc32(pristine) != control.pristine_crc.load(Ordering::Relaxed) {
            return Err(ResetCause::PristineCorrupt);
        }
        // SAFETY: the image's code range, `len` bytes, written with WP off; the copy holds what
        // was there at cold boot, so the code running now (this function) is unchanged by it.
        with_code_writable(|| unsafe {
            core::ptr::copy_nonoverlapping(pristine.as_ptr(), start as *mut u8, len as usize)
        });
    } else if at != 0 {
        let byte = control.repair_byte.load(Ordering::Relaxed) as u8;
        // SAFETY: `at - 1` is a byte of the image's code an injection flipped.
        with_code_writable(|| unsafe { ((at - 1) as *mut u8).write_volatile(byte) });
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

/// The plan from the command line, once parsed.
static PLAN: spin::Once<Option<Plan>> = spin::Once::new();
static FIRED: AtomicBool = AtomicBool::new(false);

pub fn plan_from(cmdline: &str) {
    PLAN.call_once(|| match Plan::from_cmdline(cmdline) {
        Some(Ok(plan)) => {
            defmt::info!(
                "fault injection armed: model {=str} seed {=u64} after {=u64} exits then {=u64} instructions",
                plan.model.name(),
                plan.seed,
                plan.exits,
                plan.steps
            );
            Some(plan)
        }
        Some(Err(_)) => {
            defmt::warn!("the boot argument inject= is malformed; nothing is injected");
            None
        }
        None => None,
    });
}

/// CPU `cpu`'s `beats`th pass: fires the planned fault if it is due here.
pub fn inject_at(cpu: usize, beats: u64) {
    let Some(Some(plan)) = PLAN.get() else { return };
    let target = plan.cpu.map_or(plan.seed % 2, u64::from) as usize;
    if cpu != target || beats != plan.exits.max(1) || FIRED.swap(true, Ordering::AcqRel) {
        return;
    }
    let now = crate::time::now_ns();
    defmt::warn!(
        "injected: {=str} on CPU {=usize} at RIP {=u64:#x} ({=u64} ns)",
        plan.model.name(),
        cpu,
        inject_at as *const () as u64,
        now
    );
    match plan.model {
        Model::Failstop => panic!("injected failstop"),
        Model::PageFault => {
            // SAFETY: deliberately faults: 64 GiB is beyond the 4 GiB identity map.
            let _ = unsafe { core::ptr::read_volatile(0x10_0000_0000 as *const u64) };
        }
        Model::Undefined => {
            // SAFETY: deliberately raises #UD.
            unsafe { core::arch::asm!("ud2", options(nomem, nostack)) }
        }
        Model::Hang => {
            x86_64::instructions::interrupts::disable();
            loop {
                core::hint::spin_loop();
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
                "injection model {=str} is not implemented on x86_64",
                plan.model.name()
            )
        }
    }
}
