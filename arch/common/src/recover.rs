//! The recovery itself (recovery.md 6), from detection to resume: the failing CPU wins the
//! recovery, stops every other CPU (the backend's NMI or SGI), each CPU captures its vCPU into
//! the ledger and leaves virtualization, locks are reset, the code is reloaded from the pristine
//! copy (microreboot) or only repaired (microreset), the ledger is re-attached and each vCPU's
//! exit journal resolved, and every CPU starts over on a fresh stack with its class-A state
//! rebuilt and its vCPU resumed from the ledger ([`crate::bringup::resume`]). The state and
//! policy it works with are in [`crate::recovery`].

use core::sync::atomic::Ordering;

use tandem_core::config::{MAX_CPUS, System};
use tandem_core::journal::ExitJournal;
use tandem_recovery::cause::{Detected, ResetCause};
use tandem_recovery::escalation;
use tandem_recovery::inject::Mode;
use tandem_recovery::resolve::{self, Resolution};
use tandem_recovery::steps::Step;

use crate::backend::{Backend, Booted};
use crate::bringup;
use crate::console::Console;
use crate::ledger::{self, VcpuSlot};
use crate::recovery::control::{self as status, Control, RUNNING};
use crate::recovery::{QUIESCE_NS, armed, control, control_mut, escalate, mode};

/// A detector on this CPU saw the hypervisor fail: recovers, never returning, or returns at once
/// when recovery is off or not armed yet (the caller reports and stops the machine as before).
pub fn recover<B: Backend>(cause: Detected, detail: u64, pc: u64) {
    if !armed() {
        return;
    }
    let (Some(control), Some(shared)) = (control(), B::booted().get()) else {
        return;
    };
    let cpu = B::cpu_index();
    let me = cpu as u32 + 1;
    match control
        .owner
        .compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire)
    {
        Ok(_) => {}
        // A failure while this CPU runs the recovery: recovering again would loop.
        Err(owner) if owner == me => {
            B::reset_log();
            defmt::error!(
                "recovery: {=str} during the recovery on CPU {=usize} (detail {=u64:#x}, at {=u64:#x})",
                cause.name(),
                cpu,
                detail,
                pc
            );
            escalate::<B>(ResetCause::FailedDuringRecovery)
        }
        // Another CPU runs the recovery; this one stops like the others.
        Err(_) => B::on_fresh_stack(cpu, follow_entry::<B>),
    }
    control.cause.store(cause as u32, Ordering::Relaxed);
    control.cause_cpu.store(cpu as u32, Ordering::Relaxed);
    control.detail.store(detail, Ordering::Relaxed);
    control.pc.store(pc, Ordering::Relaxed);
    let now = B::recovery_now_ns();
    // SAFETY: this CPU owns the recovery; the others are being stopped and never touch the
    // timeline.
    let timeline = unsafe { &mut control_mut().timeline };
    *timeline = Default::default();
    timeline.mark(Step::Detected, now);
    let expected = partition_cpus(&shared.system) & !(1 << cpu);
    B::stop_cpus(expected);
    capture::<B>(shared, cpu);
    let deadline = now.saturating_add(QUIESCE_NS);
    while control.arrived.load(Ordering::Acquire) & expected != expected {
        if B::recovery_now_ns() > deadline {
            // The detection is reported before giving up, so the failure is not taken for an
            // undetected one.
            B::reset_log();
            report_detection(control);
            escalate::<B>(ResetCause::CpuDidNotStop);
        }
        B::relax();
    }
    B::on_fresh_stack(cpu, own_entry::<B>)
}

/// The CPUs that host a partition (all started at cold boot).
fn partition_cpus(system: &System) -> u32 {
    system
        .partitions
        .iter()
        .flat_map(|p| p.cpus.iter())
        .fold(0, |mask, &c| mask | 1 << c)
}

/// This CPU's vCPU, if it runs one, into its ledger slot; virtualization off either way.
fn capture<B: Backend>(shared: &Booted<B>, cpu: usize) {
    let Some(control) = control() else { return };
    // SAFETY: every CPU touches only its own slot, and its vCPU loop was abandoned.
    let slot = unsafe { ledger::slot::<VcpuSlot<B::VcpuState>>(shared.ledger, cpu) };
    let running = control.status(cpu) == RUNNING;
    if !B::capture_vcpu(cpu, &mut slot.state) && running {
        // No VMCS or EL1 context to take: the vCPU had not been made yet, so it starts over.
        control.set_status(cpu, status::IDLE);
    }
}

/// Where a CPU the backend stops for a recovery goes (from its NMI or SGI handler).
pub fn follower<B: Backend>() -> extern "C" fn(usize) -> ! {
    follow_entry::<B>
}

/// A CPU the owner stopped (or that failed second): captures its vCPU, waits for the owner,
/// then resumes.
extern "C" fn follow_entry<B: Backend>(cpu: usize) -> ! {
    let (Some(control), Some(shared)) = (control(), B::booted().get()) else {
        B::park()
    };
    let release = control.release.load(Ordering::Acquire);
    // A second stop signal (one pending behind another NMI) finds this CPU already stopped.
    if control.arrived.load(Ordering::Acquire) & (1 << cpu) == 0 {
        capture::<B>(shared, cpu);
        control.arrived.fetch_or(1 << cpu, Ordering::AcqRel);
    }
    // Waiting as other cross-CPU waits do (aarch64: WFE until the owner's SEV): a bare spin
    // would keep an emulator running its CPUs round-robin on one thread (QEMU -icount) on this
    // CPU until its next timer deadline, while the owner has the recovery to do.
    while control.release.load(Ordering::Acquire) == release {
        B::wait_for_event();
    }
    resume_cpu::<B>(shared, cpu)
}

/// The owner, on a fresh stack with every other CPU stopped: the recovery proper.
extern "C" fn own_entry<B: Backend>(cpu: usize) -> ! {
    let Some(shared) = B::booted().get() else {
        B::park()
    };
    B::stop_done();
    let now = B::recovery_now_ns();
    // SAFETY: this CPU owns the recovery and every other CPU is stopped.
    let c = unsafe { control_mut() };
    c.timeline.mark(Step::Quiesced, now);
    c.timeline.mark(Step::Captured, now);
    Console::<B::Uart>::reset_lock();
    B::reset_log();
    crate::console_input::reset_lock();
    report_detection(c);
    c.timeline.mark(Step::Reported, B::recovery_now_ns());
    if !c.history.record(now, escalation::DEFAULT) {
        escalate::<B>(ResetCause::TooManyRecoveries);
    }
    let mode = mode();
    if B::repair_code(c, mode == Mode::Microreboot).is_err() {
        escalate::<B>(ResetCause::PristineCorrupt);
    }
    c.timeline.mark(Step::Image, B::recovery_now_ns());
    let Ok(boots) = ledger::attach::<VcpuSlot<B::VcpuState>>(shared.ledger) else {
        escalate::<B>(ResetCause::LedgerInvalid)
    };
    for other in 0..MAX_CPUS {
        if c.status(other) == RUNNING {
            resolve_exit::<B>(shared, other);
        }
    }
    c.timeline.mark(Step::Ledger, B::recovery_now_ns());
    defmt::info!(
        "recovery: ledger re-attached (boots = {=u32}), exits resolved",
        boots
    );
    c.arrived.store(0, Ordering::Release);
    c.resumed.store(0, Ordering::Release);
    c.release.fetch_add(1, Ordering::AcqRel);
    B::wake_cpus();
    resume_cpu::<B>(shared, cpu)
}

fn report_detection(c: &Control) {
    let cause =
        Detected::from_raw(c.cause.load(Ordering::Relaxed)).map_or("unknown", Detected::name);
    let message =
        core::str::from_utf8(c.message.get(..c.message_len as usize).unwrap_or(&[])).unwrap_or("");
    defmt::warn!(
        "recovery: detected {=str} on CPU {=u32} (at {=u64:#x}, detail {=u64:#x}){=str}{=str} ({=u64} ns)",
        cause,
        c.cause_cpu.load(Ordering::Relaxed),
        c.pc.load(Ordering::Relaxed),
        c.detail.load(Ordering::Relaxed),
        if message.is_empty() { "" } else { ": " },
        message,
        c.timeline.at(Step::Detected)
    );
}

/// Resolves CPU `cpu`'s exit journal: rolls a half-handled exit back or prints what is left of
/// a committed one's lines. A corrupt journal stops the partition when it resumes.
fn resolve_exit<B: Backend>(shared: &Booted<B>, cpu: usize) {
    // SAFETY: the owner touches another CPU's slot only here, while that CPU is stopped.
    let slot = unsafe { ledger::slot::<VcpuSlot<B::VcpuState>>(shared.ledger, cpu) };
    let name = bringup::partition_name(&shared.system, cpu);
    match resolve::resolve(&slot.journal) {
        Ok(Resolution::Nothing) => {}
        Ok(Resolution::RollBack { pc }) => {
            resolve::roll_back(&slot.journal, &mut slot.record);
            B::roll_back(&mut slot.state, pc, &slot.journal.gprs);
            slot.journal.idle();
            defmt::info!(
                "recovery: CPU {=usize}'s exit at {=u64:#x} rolled back",
                cpu,
                pc
            );
        }
        Ok(Resolution::Finish) => {
            finish_batch::<B>(name, &mut slot.journal);
            slot.journal.idle();
        }
        Err(corrupt) => {
            defmt::warn!(
                "recovery: CPU {=usize}'s exit journal is corrupt (phase {=u32:#x}); partition {=str} is stopped",
                cpu,
                corrupt.phase,
                name
            );
            slot.failed = 1;
        }
    }
}

fn finish_batch<B: Backend>(name: &str, journal: &mut ExitJournal) {
    Console::<B::Uart>::partition_batch(name, journal);
}

/// Every CPU, the owner last: rebuilds its class-A state and goes on with its vCPU.
fn resume_cpu<B: Backend>(shared: &'static Booted<B>, cpu: usize) -> ! {
    B::rebuild_cpu(cpu);
    bringup::resume::<B>(shared, cpu)
}
