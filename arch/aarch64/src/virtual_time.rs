//! One virtual counter per partition. A guest's CNTVCT_EL0 is the physical count minus
//! CNTVOFF_EL2 (Arm ARM D11.2.4), which each CPU holds for the vCPU it runs: every vCPU of a
//! partition takes the offset its first vCPU took when the partition started (or restarted), so
//! they all read the same virtual time, as an SMP kernel requires of its CPUs' counters.

use core::sync::atomic::{AtomicU64, Ordering};

use tandem_core::config::MAX_PARTITIONS;

use crate::time;

static OFFSETS: [AtomicU64; MAX_PARTITIONS] = [const { AtomicU64::new(0) }; MAX_PARTITIONS];

/// Partition `partition` (re)starts now: its virtual time begins at 0; returns the offset.
pub fn start(partition: usize) -> u64 {
    let now = time::counter();
    if let Some(offset) = OFFSETS.get(partition) {
        offset.store(now, Ordering::Release);
    }
    now
}

/// The offset of partition `partition`'s virtual time, for a vCPU that starts after its first.
pub fn offset(partition: usize) -> u64 {
    OFFSETS
        .get(partition)
        .map_or_else(time::counter, |offset| offset.load(Ordering::Acquire))
}
