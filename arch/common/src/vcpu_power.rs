//! Power state of each CPU's vCPU, for starting a partition's further vCPUs on request (PSCI
//! CPU_ON on aarch64): one mailbox per physical CPU, written by the vCPU that asks and read by the
//! CPU that waits.

use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use spin::Once;
use tandem_core::config::{MAX_CPUS, System};
use tandem_core::power::PowerStatus;

const OFF: u8 = 0;
/// A start request is being written: its entry and context are not readable yet.
const CLAIMED: u8 = 1;
/// A start request is complete and waits for the CPU to take it.
const POSTED: u8 = 2;
const ON: u8 = 3;

struct Mailbox {
    state: AtomicU8,
    entry: AtomicU64,
    context: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const IDLE: Mailbox = Mailbox {
    state: AtomicU8::new(OFF),
    entry: AtomicU64::new(0),
    context: AtomicU64::new(0),
};
static MAILBOXES: [Mailbox; MAX_CPUS] = [IDLE; MAX_CPUS];

/// Posts a start request for the vCPU on CPU `cpu`. The caller wakes that CPU if it waits (SEV).
pub fn request_start(cpu: usize, entry: u64, context: u64) -> PowerStatus {
    let Some(mailbox) = MAILBOXES.get(cpu) else {
        return PowerStatus::InvalidParameters;
    };
    // Claim the mailbox first, so a second request cannot overwrite a pending one's entry.
    match mailbox
        .state
        .compare_exchange(OFF, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
    {
        Ok(_) => {
            mailbox.entry.store(entry, Ordering::Relaxed);
            mailbox.context.store(context, Ordering::Relaxed);
            mailbox.state.store(POSTED, Ordering::Release);
            PowerStatus::Success
        }
        Err(_) => PowerStatus::AlreadyOn,
    }
}

/// Whether the vCPU on CPU `cpu` is on (or starting).
pub fn running(cpu: usize) -> bool {
    MAILBOXES
        .get(cpu)
        .is_some_and(|m| m.state.load(Ordering::Acquire) != OFF)
}

/// The vCPU on CPU `cpu` runs (the first vCPU of a partition starts by itself).
pub(crate) fn set_on(cpu: usize) {
    MAILBOXES[cpu].state.store(ON, Ordering::Release);
}

/// The vCPU on CPU `cpu` is off.
pub(crate) fn set_off(cpu: usize) {
    MAILBOXES[cpu].state.store(OFF, Ordering::Release);
}

/// Waits for a start request for CPU `cpu`, calling `idle` between looks; returns its entry point
/// and context argument.
pub(crate) fn wait_for_start(cpu: usize, idle: impl Fn()) -> (u64, u64) {
    let mailbox = &MAILBOXES[cpu];
    while mailbox.state.load(Ordering::Acquire) != POSTED {
        idle();
    }
    let start = (
        mailbox.entry.load(Ordering::Relaxed),
        mailbox.context.load(Ordering::Relaxed),
    );
    mailbox.state.store(ON, Ordering::Release);
    start
}

/// The machine's partitions, for start requests between vCPUs (set once, at bring-up).
static SYSTEM: Once<&'static System> = Once::new();

/// Makes the machine's partitions known to start requests (once, at bring-up).
pub(crate) fn publish(system: &'static System) {
    SYSTEM.call_once(|| system);
}

/// The physical CPU that runs vCPU `vcpu` of partition `partition`.
pub fn cpu_of(partition: u32, vcpu: u32) -> Option<usize> {
    let p = SYSTEM.get()?.partitions.get(partition as usize)?;
    p.cpus.get(vcpu as usize).map(|&c| usize::from(c))
}

/// The physical CPUs of partition `partition`, one per vCPU.
pub fn cpus_of(partition: usize) -> &'static [u8] {
    SYSTEM
        .get()
        .and_then(|s| s.partitions.get(partition))
        .map_or(&[], |p| p.cpus.as_slice())
}

/// Posts a start request for vCPU `vcpu` of partition `partition` (PSCI CPU_ON). The caller wakes
/// the CPU if the architecture needs it.
pub fn start_vcpu(partition: u32, vcpu: u32, entry: u64, context: u64) -> PowerStatus {
    match cpu_of(partition, vcpu) {
        Some(cpu) => request_start(cpu, entry, context),
        None => PowerStatus::InvalidParameters,
    }
}

/// Whether vCPU `vcpu` of partition `partition` is on.
pub fn vcpu_running(partition: u32, vcpu: u32) -> bool {
    cpu_of(partition, vcpu).is_some_and(running)
}
