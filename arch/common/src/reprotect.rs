//! Re-protection onto a spare CPU (stop-and-copy): the copy of a fault-tolerant partition that
//! went live pauses at a deterministic exit boundary, copies its guest memory into the spare's,
//! leaves its vCPU state and record in the ledger for the spare, and goes on as the primary of the
//! next protection epoch once the spare replays as its backup. Everything is copied during the
//! pause; dirty-page tracking (copying while the guest runs, `tandem_ft::reprotect`) is not
//! wired in yet.

use tandem_core::config::{Ft, FtRole, MAX_FT_PAIRS, Partition};
use tandem_core::platform::Platform;
use tandem_core::record::VcpuRecord;
use tandem_core::report::StopReason;

use crate::backend::{Backend, Booted};
use crate::ledger::{self, VcpuSlot};
use crate::platform::HwPlatform;
use crate::replication::{self, BackupCopy, FtCopy, Injected, PrimaryCopy};

/// Why re-protection did not happen; the live copy then runs on alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
enum Refused {
    /// The partition's pair has no spare copy.
    NoSpare,
    /// The next protection epoch has no ring (or its primary end is taken).
    NoEpoch,
    /// The backend could not copy the memory or the vCPU.
    Backend,
}

/// The spare copy of `ft`'s pair, by index.
fn spare_of(system: &[Partition], ft: &Ft) -> Option<usize> {
    system.iter().position(|p| {
        p.ft.is_some_and(|theirs| theirs.pair == ft.pair && theirs.role == FtRole::Spare)
    })
}

/// Whether `ft`'s pair has a spare copy to re-protect onto.
pub fn has_spare(system: &[Partition], ft: &Ft) -> bool {
    spare_of(system, ft).is_some()
}

/// Re-protects partition `index`, whose copy `copy` went live and paused `vcpu` at a boundary,
/// onto its spare; the copy then goes on as the next epoch's primary. On failure it goes on
/// alone.
pub fn reprotect<B: Backend>(
    shared: &Booted<B>,
    index: usize,
    vcpu: &B::Vcpu,
    record: &VcpuRecord,
    copy: &mut FtCopy,
    platform: &HwPlatform<B>,
) {
    let partition = &shared.system.partitions[index];
    let Some(ft) = partition.ft else {
        copy.unprotected();
        return;
    };
    if let Err(why) = hand_over::<B>(shared, partition, &ft, vcpu, record, copy, platform) {
        defmt::error!(
            "FT re-protection of {=str} refused: {}; it runs unprotected",
            partition.name.as_str(),
            why
        );
        copy.unprotected();
    }
}

fn hand_over<B: Backend>(
    shared: &Booted<B>,
    partition: &Partition,
    ft: &Ft,
    vcpu: &B::Vcpu,
    record: &VcpuRecord,
    copy: &mut FtCopy,
    platform: &HwPlatform<B>,
) -> Result<(), Refused> {
    let spare_index = spare_of(&shared.system.partitions, ft).ok_or(Refused::NoSpare)?;
    let spare = &shared.system.partitions[spare_index];
    let pair = usize::from(ft.pair);
    if pair >= MAX_FT_PAIRS {
        return Err(Refused::NoSpare);
    }
    let epoch = copy.epoch() + 1;
    let paused_at = platform.now_ns();
    defmt::info!(
        "FT re-protection of {=str} onto CPU {=[u8]} starts at exit {=u64} ({=u64} ns), for epoch {=u32}",
        partition.name.as_str(),
        spare.cpus.as_slice(),
        record.deterministic_exits,
        paused_at,
        epoch
    );
    let bytes = shared
        .backend
        .copy_guest_memory(partition, spare)
        .map_err(|_| Refused::Backend)?;
    // SAFETY: the ledger was formatted with this slot type and `pair` is in range; the spare
    // reads the snapshot only after `hand_off` below, and nothing else touches it.
    let handoff = unsafe { ledger::handoff::<VcpuSlot<B::VcpuState>>(shared.ledger, pair) };
    B::snapshot_vcpu(vcpu, &mut handoff.state).map_err(|_| Refused::Backend)?;
    handoff.record = *record;
    let copied_at = platform.now_ns();
    replication::hand_off(ft.pair);
    B::wake_cpus();
    replication::wait_for_backup(ft, epoch, B::wait_for_event);
    let injected = Injected::from_cmdline(shared.backend.cmdline()).for_epoch(epoch);
    let primary =
        PrimaryCopy::new(ft, epoch, platform.now_ns(), injected, B::die).ok_or(Refused::NoEpoch)?;
    copy.protected_by_spare(primary);
    let resumed_at = platform.now_ns();
    defmt::info!(
        "FT re-protection of {=str}: {=u64} pages copied in 0 rounds while running and {=u64} while paused (stop-and-copy); the guest paused {=u64} ns ({=u64} ns copying, {=u64} ns for the spare to restore)",
        partition.name.as_str(),
        0u64,
        bytes / tandem_core::config::PAGE_SIZE,
        resumed_at - paused_at,
        copied_at - paused_at,
        resumed_at - copied_at
    );
    defmt::info!(
        "FT epoch {=u32} of {=str} starts at exit {=u64}: primary on CPU {=[u8]}, backup on CPU {=[u8]}",
        epoch,
        partition.name.as_str(),
        record.deterministic_exits,
        partition.cpus.as_slice(),
        spare.cpus.as_slice()
    );
    Ok(())
}

/// The spare copy's side: waits until the live copy hands it a snapshot (never, if no failover
/// comes; the run then ends without it), restores it into `vcpu` and `record`, and returns the
/// backup of the next epoch.
pub fn wait_as_spare<B: Backend>(
    shared: &Booted<B>,
    ft: &Ft,
    vcpu: &mut B::Vcpu,
    record: &mut VcpuRecord,
    platform: &HwPlatform<B>,
) -> Result<FtCopy, StopReason> {
    let pair = usize::from(ft.pair);
    if pair >= MAX_FT_PAIRS {
        return Err(StopReason::ReplicationFailed);
    }
    while !replication::handed_off(ft.pair) {
        B::wait_for_event();
    }
    // SAFETY: as in `hand_over`: the live copy announced the snapshot and no longer touches it.
    let handoff = unsafe { ledger::handoff::<VcpuSlot<B::VcpuState>>(shared.ledger, pair) };
    B::restore_vcpu(vcpu, &handoff.state).map_err(|_| StopReason::ReplicationFailed)?;
    *record = handoff.record;
    let epoch = replication::FIRST_EPOCH + 1;
    let injected = Injected::from_cmdline(shared.backend.cmdline()).for_epoch(epoch);
    let backup = BackupCopy::new(ft, epoch, platform.now_ns(), injected)
        .ok_or(StopReason::ReplicationFailed)?;
    defmt::info!(
        "FT spare restored at exit {=u64}: it replays as the backup of epoch {=u32}",
        record.deterministic_exits,
        epoch
    );
    Ok(FtCopy::backup(backup, epoch, false))
}
