//! Kicking a CPU out of its guest or its idle wait, and stopping a partition's vCPUs together:
//! when one vCPU stops the partition (PSCI SYSTEM_OFF, SYSTEM_RESET while siblings run, or a
//! fatal stop), its siblings must stop too, or they run on and the run never ends.

use core::sync::atomic::{AtomicBool, Ordering};

use tandem_core::config::{MAX_CPUS, MAX_PARTITIONS, Partition};

use crate::backend::Backend;
use crate::clock::Clock;

/// A kick for each CPU not yet seen by its idle wait.
static KICKED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Partitions one of whose vCPUs stopped them.
static STOPPING: [AtomicBool; MAX_PARTITIONS] = [const { AtomicBool::new(false) }; MAX_PARTITIONS];

/// Brings CPU `cpu` out of its guest (an exit) or out of [`idle_until`]; it then looks at what
/// changed for it.
pub fn kick<B: Backend>(cpu: usize) {
    let Some(flag) = KICKED.get(cpu) else {
        return;
    };
    // Set before the interrupt is sent, so the CPU it wakes sees it.
    flag.store(true, Ordering::Release);
    B::kick_cpu(cpu);
}

/// Idles CPU `cpu` until `deadline_ns` or until it is kicked, whichever comes first.
pub fn idle_until<B: Backend>(clock: &B::Clock, cpu: usize, deadline_ns: u64) {
    let Some(flag) = KICKED.get(cpu) else {
        return clock.wait_until_ns(deadline_ns);
    };
    loop {
        // A kick's interrupt, left pending, would end every later wait at once; dropped before
        // the flag is looked at, so one sent after it still finds the flag set.
        B::clear_kick();
        if flag.swap(false, Ordering::AcqRel) || clock.now_ns() >= deadline_ns {
            return;
        }
        clock.wait_once_until_ns(deadline_ns);
    }
}

/// Partition `index` (`partition`) stops, as its vCPU on CPU `cpu` did: its other vCPUs are
/// kicked and stop at their next look ([`stopping`]).
pub fn stop_partition<B: Backend>(partition: &Partition, index: usize, cpu: usize) {
    let Some(flag) = STOPPING.get(index) else {
        return;
    };
    flag.store(true, Ordering::Release);
    for sibling in partition.cpus.iter().map(|&c| usize::from(c)) {
        if sibling != cpu {
            kick::<B>(sibling);
        }
    }
}

/// Whether a vCPU of partition `index` stopped it.
pub fn stopping(index: usize) -> bool {
    STOPPING
        .get(index)
        .is_some_and(|flag| flag.load(Ordering::Acquire))
}
