//! What a partition's vCPUs do to each other: SGIs between them (a pending set per CPU, posted by
//! the sender, who then kicks the target), and whether a vCPU waiting for one (WFI with no timer)
//! could still get it from a sibling.

use core::sync::atomic::{AtomicBool, AtomicU16, Ordering};

use tandem_core::config::MAX_CPUS;

use crate::backend::Backend;
use crate::{kick, vcpu_power};

/// SGIs sent to each CPU's vCPU and not yet taken (bit n = INTID n).
static PENDING: [AtomicU16; MAX_CPUS] = [const { AtomicU16::new(0) }; MAX_CPUS];
/// CPUs whose vCPU waits for a sibling and for nothing else.
static WAITING: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Makes SGI `intid` pending for vCPU `vcpu` of partition `partition` and kicks its CPU, unless
/// that is `from`, the sender's own (its exit loop takes the SGI before the next entry). A vCPU
/// that does not exist or is off gets nothing (one starting keeps what it is sent).
pub fn send_sgi<B: Backend>(partition: usize, vcpu: u32, intid: u8, from: usize) {
    let Some(cpu) = vcpu_power::cpu_of(partition as u32, vcpu).filter(|&c| vcpu_power::running(c))
    else {
        return;
    };
    let (Some(pending), Some(waiting)) = (PENDING.get(cpu), WAITING.get(cpu)) else {
        return;
    };
    pending.fetch_or(1 << (intid & 0xf), Ordering::AcqRel);
    // Cleared by the sender, before the kick: a sibling deciding whether anyone could still wake
    // it must not count this one as waiting.
    waiting.store(false, Ordering::SeqCst);
    if cpu != from {
        kick::kick::<B>(cpu);
    }
}

/// The SGIs sent to the vCPU on CPU `cpu` since the last call.
pub fn take_sgis(cpu: usize) -> u16 {
    PENDING.get(cpu).map_or(0, |pending| {
        // A plain load first: the exit loop asks at every exit, and there is rarely one.
        if pending.load(Ordering::Relaxed) == 0 {
            0
        } else {
            pending.swap(0, Ordering::AcqRel)
        }
    })
}

/// Drops SGIs sent to the vCPU on CPU `cpu`, which turned off.
pub fn clear_sgis(cpu: usize) {
    if let Some(pending) = PENDING.get(cpu) {
        pending.store(0, Ordering::Release);
    }
}

/// Idles the vCPU on CPU `cpu` (of partition `partition`) until it is kicked, if another vCPU of
/// the partition runs and does not itself wait the same way; returns whether it idled. When two
/// decide at once, sequentially consistent flags let at most one of them wait (neither may, and
/// both stop, which is what waiting would have come to).
pub fn wait_for_sibling<B: Backend>(clock: &B::Clock, partition: usize, cpu: usize) -> bool {
    let Some(waiting) = WAITING.get(cpu) else {
        return false;
    };
    waiting.store(true, Ordering::SeqCst);
    let awake = vcpu_power::cpus_of(partition)
        .iter()
        .map(|&c| usize::from(c))
        .any(|c| {
            c != cpu
                && vcpu_power::running(c)
                && !WAITING.get(c).is_some_and(|w| w.load(Ordering::SeqCst))
        });
    if awake {
        kick::idle_until::<B>(clock, cpu, u64::MAX);
    }
    waiting.store(false, Ordering::SeqCst);
    awake
}
