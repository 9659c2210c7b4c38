//! Re-protection onto a spare CPU of the same board: the pages are copied from one partition's
//! memory into the other's, and the vCPU state and the record go through the ledger.

use tandem_core::config::{Ft, FtRole, MAX_FT_PAIRS, PAGE_SIZE, Partition};
use tandem_core::platform::Platform;
use tandem_core::record::VcpuRecord;
use tandem_core::report::StopReason;
use tandem_ft::reprotect::{ReprotectAction, ReprotectConfig};

use super::Tracker;
use crate::backend::{Backend, Booted};
use crate::ledger::{self, VcpuSlot};
use crate::platform::HwPlatform;
use crate::replication::{self, BackupCopy, FtCopy, Injected, OnBoard, PrimaryCopy, Session};

/// Pages copied per step while the guest runs (64 KiB: each step holds the guest at a boundary).
const CHUNK_PAGES: u64 = 16;
/// The guest pauses for good once at most this many pages are dirty...
const PAUSE_BELOW: u64 = 16;
/// ...or after this many rounds of re-sending dirty pages, if they do not shrink.
const MAX_ROUNDS: u32 = 8;

/// Why re-protection did not happen; the live copy then runs on alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
enum Refused {
    /// The partition's pair has no spare copy.
    NoSpare,
    /// The next protection epoch has no ring (or its primary end is taken).
    NoEpoch,
    /// The backend could not track, copy the memory or the vCPU.
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

/// One step of re-protecting partition `index`, whose copy `copy` went live and paused `vcpu`
/// at a boundary, onto its spare: the first starts it, the last makes the copy the next epoch's
/// primary. On failure the copy goes on alone.
pub fn reprotect<B: Backend>(
    shared: &Booted<B>,
    index: usize,
    vcpu: &mut B::Vcpu,
    record: &VcpuRecord,
    copy: &mut FtCopy<OnBoard>,
    platform: &HwPlatform<B>,
) {
    let partition = &shared.system.partitions[index];
    let result = match partition.ft {
        Some(ft) => step::<B>(shared, partition, &ft, vcpu, record, copy, platform),
        None => Err(Refused::NoSpare),
    };
    if let Err(why) = result {
        defmt::error!(
            "FT re-protection of {=str} refused: {}; it runs unprotected",
            partition.name.as_str(),
            why
        );
        B::stop_dirty_tracking(vcpu);
        copy.unprotected();
    }
}

fn step<B: Backend>(
    shared: &Booted<B>,
    partition: &Partition,
    ft: &Ft,
    vcpu: &mut B::Vcpu,
    record: &VcpuRecord,
    copy: &mut FtCopy<OnBoard>,
    platform: &HwPlatform<B>,
) -> Result<(), Refused> {
    let spare_index = spare_of(&shared.system.partitions, ft).ok_or(Refused::NoSpare)?;
    let spare = &shared.system.partitions[spare_index];
    let pair = usize::from(ft.pair);
    if pair >= MAX_FT_PAIRS {
        return Err(Refused::NoSpare);
    }
    let epoch = copy.epoch() + 1;
    let mut tracker = Tracker::<B> {
        vcpu,
        pages: partition.memory_size() / PAGE_SIZE,
        failed: false,
    };
    if copy.session().is_none() {
        defmt::info!(
            "FT re-protection of {=str} onto CPU {=[u8]} starts at exit {=u64} ({=u64} ns), for epoch {=u32}",
            partition.name.as_str(),
            spare.cpus.as_slice(),
            record.deterministic_exits,
            platform.now_ns(),
            epoch
        );
        let config = ReprotectConfig {
            chunk_pages: CHUNK_PAGES,
            pause_below: PAUSE_BELOW,
            max_rounds: MAX_ROUNDS,
            new_epoch: epoch,
        };
        let machine = tracker.start(config).ok_or(Refused::Backend)?;
        *copy.session() = Some(Session {
            machine,
            started_ns: platform.now_ns(),
            paused_ns: None,
            transfer: (),
        });
    }
    let copy_pages = |first, count| {
        shared
            .backend
            .copy_guest_pages(partition, spare, first, count)
            .map_err(|_| Refused::Backend)
    };
    let mut buf = [0u64; CHUNK_PAGES as usize];
    loop {
        let Some(session) = copy.session().as_mut() else {
            return Ok(());
        };
        let paused = session.paused_ns.is_some();
        match session.machine.step(&mut tracker, &mut buf) {
            ReprotectAction::SendRange { first, count } => copy_pages(first, count)?,
            ReprotectAction::SendDirty { count } => {
                for &page in &buf[..count] {
                    copy_pages(page, 1)?;
                }
            }
            ReprotectAction::Pause => session.paused_ns = Some(platform.now_ns()),
            ReprotectAction::SendDeviceState => {
                // SAFETY: the ledger was formatted with this slot type and `pair` is in range;
                // the spare reads the snapshot only after `hand_off`, and nothing else touches it.
                let handoff =
                    unsafe { ledger::handoff::<VcpuSlot<B::VcpuState>>(shared.ledger, pair) };
                B::snapshot_vcpu(tracker.vcpu, &mut handoff.state).map_err(|_| Refused::Backend)?;
                handoff.record = *record;
            }
            ReprotectAction::Resume { epoch } => {
                let (stats, started, paused) = (
                    session.machine.stats(),
                    session.started_ns,
                    session.paused_ns.unwrap_or(session.started_ns),
                );
                // The primary's end of the new ring is taken before the spare may start: once
                // it replays, a copy that went on alone would leave it to go live as well.
                let injected = Injected::from_cmdline(shared.backend.cmdline()).for_epoch(epoch);
                let primary = PrimaryCopy::new(ft, epoch, platform.now_ns(), injected, B::die)
                    .ok_or(Refused::NoEpoch)?;
                B::stop_dirty_tracking(tracker.vcpu);
                let copied_at = platform.now_ns();
                replication::hand_off(ft.pair);
                B::wake_cpus();
                replication::wait_for_backup(ft, epoch, B::wait_for_event);
                copy.protected_by_spare(primary);
                let resumed_at = platform.now_ns();
                defmt::info!(
                    "FT re-protection of {=str}: {=u64} pages copied while the guest ran ({=u32} rounds of dirty pages after the full copy), {=u64} in the pause; the guest paused {=u64} ns ({=u64} ns for the last pages and the vCPU state, {=u64} ns for the spare to restore it), {=u64} ns in all",
                    partition.name.as_str(),
                    stats.pages_sent - stats.paused_pages,
                    stats.rounds,
                    stats.paused_pages,
                    resumed_at - paused,
                    copied_at - paused,
                    resumed_at - copied_at,
                    resumed_at - started
                );
                defmt::info!(
                    "FT epoch {=u32} of {=str} starts at exit {=u64}: primary on CPU {=[u8]}, backup on CPU {=[u8]}",
                    epoch,
                    partition.name.as_str(),
                    record.deterministic_exits,
                    partition.cpus.as_slice(),
                    spare.cpus.as_slice()
                );
                return Ok(());
            }
            ReprotectAction::Done => return Ok(()),
        }
        // While the guest runs, one step per boundary: it runs on in between.
        if !paused
            && copy
                .session()
                .as_ref()
                .is_some_and(|s| s.paused_ns.is_none())
        {
            return Ok(());
        }
    }
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
) -> Result<FtCopy<OnBoard>, StopReason> {
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
        "FT spare restored on CPU {=[u8]} at exit {=u64} ({=str} {=u64}): it replays as the backup of epoch {=u32}",
        shared
            .system
            .partitions
            .iter()
            .find(|p| p.ft == Some(*ft))
            .map_or(&[][..], |p| p.cpus.as_slice()),
        record.deterministic_exits,
        B::WORDS.counter,
        platform.counter(),
        epoch
    );
    Ok(FtCopy::backup(backup, epoch, false))
}
