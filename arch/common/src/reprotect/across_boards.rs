//! Re-protection onto a spare board: the copy that went live sends its pages, then the vCPU state
//! and the record, over a link of their own ([`ethernet::transfer`]) in the next epoch; the spare
//! board writes them into its copy of the partition, restores the vCPU, and the two meet as the
//! next epoch's primary and backup over the log link, the witness arbitrating that epoch.
//!
//! A page of zeros travels as part of a run (one frame for many), a page with data as nine
//! pieces (`tandem_ft::reprotect::transfer`). While the guest runs, each boundary hands the link
//! what its window takes, and the machine moves on only once its last step is all sent.

use core::mem::size_of;

use tandem_core::config::{Ft, FtLink, FtNet, PAGE_SIZE, Partition};
use tandem_core::platform::Platform;
use tandem_core::record::VcpuRecord;
use tandem_core::report::StopReason;
use tandem_ft::frame::MAX_FRAME;
use tandem_ft::link::{LogReceiver, LogSender};
use tandem_ft::reprotect::transfer::{Accepted, Incoming, Sink, Source};
use tandem_ft::reprotect::{ReprotectAction, ReprotectConfig};

use super::Tracker;
use crate::backend::{Backend, Booted};
use crate::guest_memory;
use crate::ledger::{self, HandoffBytes, VcpuSlot};
use crate::net::MacFmt;
use crate::platform::HwPlatform;
use crate::replication::ethernet::{self, AcrossBoards, Meeting, TRANSFER_QUEUE, Transfer};
use crate::replication::{self, FtCopy, Injected, Session};

/// Pages one step queues while the guest runs: a run of zero pages this long is one frame.
const CHUNK_PAGES: u64 = TRANSFER_QUEUE as u64;
/// The guest pauses for good once at most this many pages are dirty (each is nine frames, and
/// an emulated e1000 takes about one frame per millisecond)...
const PAUSE_BELOW: u64 = 4;
/// ...or after this many rounds of re-sending dirty pages, if they do not shrink.
const MAX_ROUNDS: u32 = 8;
/// How often a paused copy, or a spare waiting for its next frame, looks at the NIC.
const POLL_NS: u64 = 100_000;
/// How often a spare that has heard nothing yet looks.
const IDLE_POLL_NS: u64 = 1_000_000;

/// Why re-protection did not happen; the live copy then runs on alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
enum Refused {
    /// The pair has no spare board.
    NoSpare,
    /// The links to the spare could not be made.
    Links(ethernet::Refused),
    /// The backend could not track, read the memory or the vCPU.
    Backend,
    /// A step queued more pages than a step may.
    Queue,
    /// The spare acknowledged nothing for the detection period (or, never heard, for as long
    /// as a board may take to boot).
    SpareSilent,
}

/// The snapshot a spare starts from: a ledger slot, as bytes.
fn snapshot_len<B: Backend>() -> usize {
    size_of::<VcpuSlot<B::VcpuState>>()
}

/// What the live copy sends from: its partition's memory and the snapshot in its ledger.
struct Live<'a, B: Backend> {
    partition: &'a Partition,
    ledger: u64,
    pair: usize,
    backend: core::marker::PhantomData<B>,
}

impl<B: Backend> Source for Live<'_, B> {
    fn page(&mut self, page: u64, out: &mut [u8; PAGE_SIZE as usize]) -> bool {
        guest_memory::read_page::<B::Coherent>(self.partition, page, out)
    }
    fn state(&mut self, offset: usize, out: &mut [u8]) {
        // SAFETY: this pair's live copy wrote the snapshot and holds no reference to it now;
        // the spare is on another board.
        unsafe {
            ledger::handoff_bytes::<VcpuSlot<B::VcpuState>>(
                self.ledger,
                self.pair,
                offset,
                HandoffBytes::Out(out),
            )
        }
    }
}

/// One step of re-protecting partition `index`, whose copy `copy` went live and paused `vcpu`
/// at a boundary, onto the pair's spare board. On failure the copy goes on alone.
pub fn reprotect<B: Backend>(
    shared: &Booted<B>,
    index: usize,
    vcpu: &mut B::Vcpu,
    record: &VcpuRecord,
    copy: &mut FtCopy<AcrossBoards>,
    platform: &HwPlatform<B>,
) {
    let partition = &shared.system.partitions[index];
    let result = match partition.ft {
        Some(
            ft @ Ft {
                link: FtLink::Ethernet(net),
                ..
            },
        ) => step::<B>(shared, partition, &ft, &net, vcpu, record, copy, platform),
        _ => Err(Refused::NoSpare),
    };
    if let Err(why) = result {
        defmt::error!(
            "FT re-protection of {=str} across boards refused: {}; it runs unprotected",
            partition.name.as_str(),
            why
        );
        B::stop_dirty_tracking(vcpu);
        copy.unprotected();
    }
}

#[allow(clippy::too_many_arguments)]
fn step<B: Backend>(
    shared: &Booted<B>,
    partition: &Partition,
    ft: &Ft,
    net: &FtNet,
    vcpu: &mut B::Vcpu,
    record: &VcpuRecord,
    copy: &mut FtCopy<AcrossBoards>,
    platform: &HwPlatform<B>,
) -> Result<(), Refused> {
    let spare = net.spare.ok_or(Refused::NoSpare)?;
    let (_, suspect_ns) = replication::timing(ft);
    let epoch = copy.epoch() + 1;
    let mut tracker = Tracker::<B> {
        vcpu,
        pages: partition.memory_size() / PAGE_SIZE,
        failed: false,
    };
    if copy.session().is_none() {
        let now = platform.now_ns();
        defmt::info!(
            "FT re-protection of {=str} onto board {} starts at exit {=u64} ({=u64} ns), for epoch {=u32}",
            partition.name.as_str(),
            MacFmt(spare),
            record.deterministic_exits,
            now,
            epoch
        );
        ethernet::retarget(spare);
        let transfer = ethernet::transfer(ft, epoch, now).map_err(Refused::Links)?;
        let config = ReprotectConfig {
            chunk_pages: CHUNK_PAGES,
            pause_below: PAUSE_BELOW,
            max_rounds: MAX_ROUNDS,
            new_epoch: epoch,
        };
        let machine = tracker.start(config).ok_or(Refused::Backend)?;
        *copy.session() = Some(Session {
            machine,
            started_ns: now,
            paused_ns: None,
            transfer,
        });
    }
    let mut source = Live::<B> {
        partition,
        ledger: shared.ledger,
        pair: usize::from(ft.pair),
        backend: core::marker::PhantomData,
    };
    let mut buf = [0u64; CHUNK_PAGES as usize];
    let mut stepped = false;
    loop {
        let now = platform.now_ns();
        let Some(session) = copy.session().as_mut() else {
            return Ok(());
        };
        let Transfer { link, out, heard } = &mut session.transfer;
        link.poll(now);
        // A spare never heard from may still be booting (three boards need not boot together):
        // it gets as long as a board at boot; once heard, the detection period.
        let limit = if heard.0 == 0 {
            ethernet::boot_wait(ft)
        } else {
            suspect_ns
        };
        if link.peer_activity() != heard.0 {
            *heard = (link.peer_activity(), now);
        } else if link.acked() < out.stats().frames && now.saturating_sub(heard.1) > limit {
            return Err(Refused::SpareSilent);
        }
        out.pump(&mut source, |f| link.send(f).is_ok())
            .map_err(|_| Refused::Backend)?;
        let paused = session.paused_ns.is_some();
        // While the guest runs, one step of the machine per boundary, and only once the step
        // before is all sent: the guest runs on in between.
        if !paused && (stepped || !out.idle()) {
            return Ok(());
        }
        if !out.idle() {
            platform.idle_until_ns(now.saturating_add(POLL_NS));
            continue;
        }
        stepped = true;
        match session.machine.step(&mut tracker, &mut buf) {
            ReprotectAction::SendRange { first, count } => out
                .queue_pages(first..first + count)
                .map_err(|_| Refused::Queue)?,
            ReprotectAction::SendDirty { count } => out
                .queue_pages(buf[..count].iter().copied())
                .map_err(|_| Refused::Queue)?,
            ReprotectAction::Pause => session.paused_ns = Some(now),
            ReprotectAction::SendDeviceState => {
                // SAFETY: the ledger was formatted with this slot type and the pair's index is
                // the configuration's; nothing else on this board touches the snapshot.
                let handoff = unsafe {
                    ledger::handoff::<VcpuSlot<B::VcpuState>>(shared.ledger, source.pair)
                };
                B::snapshot_vcpu(tracker.vcpu, &mut handoff.state).map_err(|_| Refused::Backend)?;
                handoff.record = *record;
                out.queue_state(snapshot_len::<B>(), now.saturating_sub(record.start_ns));
            }
            ReprotectAction::Resume { epoch } => {
                let stats = session.machine.stats();
                let sent = out.stats();
                let (started, paused) = (
                    session.started_ns,
                    session.paused_ns.unwrap_or(session.started_ns),
                );
                // The spare's first acknowledgement on the log link says it has the whole
                // snapshot; until then the state link goes on resending what it lost.
                let injected = Injected::from_cmdline(shared.backend.cmdline()).for_epoch(epoch);
                let primary = ethernet::primary(
                    ft,
                    net,
                    epoch,
                    &|| platform.now_ns(),
                    &|ns| platform.idle_until_ns(ns),
                    &mut |t| {
                        link.poll(t);
                        let _ = out.pump(&mut source, |f| link.send(f).is_ok());
                    },
                    injected,
                    B::die,
                )
                .map_err(Refused::Links)?;
                B::stop_dirty_tracking(tracker.vcpu);
                copy.protected_by_spare(primary);
                let resumed_at = platform.now_ns();
                defmt::info!(
                    "FT re-protection of {=str} across boards: {=u64} pages sent while the guest ran (of {=u64}; {=u32} rounds of dirty pages after the full copy), {=u64} in the pause; {=u64} with data, {=u64} of zeros, in {=u64} frames; the guest paused {=u64} ns, {=u64} ns in all",
                    partition.name.as_str(),
                    stats.pages_sent - stats.paused_pages,
                    tracker.pages,
                    stats.rounds,
                    stats.paused_pages,
                    sent.data_pages,
                    sent.zero_pages,
                    sent.frames,
                    resumed_at - paused,
                    resumed_at - started
                );
                defmt::info!(
                    "FT epoch {=u32} of {=str} starts at exit {=u64}: primary on this board, backup on board {}",
                    epoch,
                    partition.name.as_str(),
                    record.deterministic_exits,
                    MacFmt(spare)
                );
                return Ok(());
            }
            ReprotectAction::Done => return Ok(()),
        }
    }
}

/// What the spare writes into: its copy of the partition's memory and the snapshot in its
/// ledger.
struct Spare<'a, B: Backend> {
    partition: &'a Partition,
    ledger: u64,
    pair: usize,
    failed: bool,
    backend: core::marker::PhantomData<B>,
}

impl<B: Backend> Sink for Spare<'_, B> {
    fn zero(&mut self, first: u64, count: u64) {
        for page in first..first + count {
            self.failed |= !guest_memory::write_page::<B::Coherent>(self.partition, page, 0, None);
        }
    }
    fn write(&mut self, page: u64, offset: usize, bytes: &[u8]) {
        self.failed |= !guest_memory::write_page::<B::Coherent>(
            self.partition,
            page,
            offset as u64,
            Some(bytes),
        );
    }
    fn state(&mut self, offset: usize, bytes: &[u8]) {
        // SAFETY: the spare's snapshot is written only here, before it is restored, and nothing
        // else on this board holds it.
        unsafe {
            ledger::handoff_bytes::<VcpuSlot<B::VcpuState>>(
                self.ledger,
                self.pair,
                offset,
                HandoffBytes::In(bytes),
            )
        }
    }
}

/// The spare board's side: waits until the copy that went live sends it the partition (never,
/// if no failover comes), writes it into its own copy, restores `vcpu` and `record`, meets the
/// live copy as the backup of the next epoch and returns that backup.
pub fn wait_as_spare<B: Backend>(
    shared: &Booted<B>,
    partition: &Partition,
    ft: &Ft,
    net: &FtNet,
    vcpu: &mut B::Vcpu,
    record: &mut VcpuRecord,
    platform: &HwPlatform<B>,
) -> Result<FtCopy<AcrossBoards>, StopReason> {
    let epoch = replication::FIRST_EPOCH + 1;
    let failed = |why: &str| -> StopReason {
        defmt::error!(
            "FT spare of {=str}: the re-protection failed: {=str}",
            partition.name.as_str(),
            why
        );
        StopReason::ReplicationFailed
    };
    let link =
        ethernet::transfer_receiver(ft, epoch).map_err(|_| failed("no frames for its link"))?;
    defmt::info!(
        "FT across boards: this board waits as the spare of {=str} until its backup ({}) goes live and re-protects onto it",
        partition.name.as_str(),
        MacFmt(net.backup)
    );
    let pages = partition.memory_size() / PAGE_SIZE;
    let mut incoming = Incoming::new(pages, snapshot_len::<B>());
    let mut sink = Spare::<B> {
        partition,
        ledger: shared.ledger,
        pair: usize::from(ft.pair),
        failed: false,
        backend: core::marker::PhantomData,
    };
    let mut frame = [0u8; MAX_FRAME];
    let mut started = None;
    let mut acked = 0;
    let guest_ns = loop {
        let now = platform.now_ns();
        match link.recv(&mut frame) {
            Ok(Some(n)) => {
                started.get_or_insert(now);
                let accepted = frame.get(..n).map(|f| incoming.accept(f, &mut sink));
                if sink.failed {
                    return Err(failed("a page lies outside the partition's memory"));
                }
                match accepted {
                    Some(Ok(Accepted::Written)) => {}
                    Some(Ok(Accepted::Complete { guest_ns })) => {
                        link.ack(incoming.stats().frames);
                        break guest_ns;
                    }
                    Some(Err(why)) => {
                        defmt::error!(
                            "FT spare of {=str}: frame {=u64} of the transfer refused: {}",
                            partition.name.as_str(),
                            incoming.stats().frames,
                            defmt::Debug2Format(&why)
                        );
                        return Err(failed("a frame of the transfer was refused"));
                    }
                    None => return Err(failed("a frame longer than its buffer")),
                }
            }
            Ok(None) => {
                let frames = incoming.stats().frames;
                if frames != acked {
                    link.ack(frames);
                    acked = frames;
                }
                let wait = if started.is_some() {
                    POLL_NS
                } else {
                    IDLE_POLL_NS
                };
                platform.idle_until_ns(now.saturating_add(wait));
            }
            Err(_) => return Err(failed("the link refused a frame")),
        }
    };
    // SAFETY: the transfer is complete; this is the only reference to the spare's snapshot.
    let handoff =
        unsafe { ledger::handoff::<VcpuSlot<B::VcpuState>>(shared.ledger, usize::from(ft.pair)) };
    B::restore_vcpu(vcpu, &handoff.state).map_err(|_| failed("the vCPU state is refused"))?;
    *record = handoff.record;
    // The record's clock was the other board's: the guest's time goes on from the snapshot's.
    let now = platform.now_ns();
    record.start_ns = now.saturating_sub(guest_ns);
    let got = incoming.stats();
    defmt::info!(
        "FT spare of {=str} restored at exit {=u64}: {=u64} frames ({=u64} zero pages, {=u64} pieces of pages, {=u64} bytes of vCPU state) in {=u64} ns; it replays as the backup of epoch {=u32}",
        partition.name.as_str(),
        record.deterministic_exits,
        got.frames,
        got.zero_pages,
        got.page_pieces,
        got.state_bytes,
        now - started.unwrap_or(now),
        epoch
    );
    let injected = Injected::from_cmdline(shared.backend.cmdline()).for_epoch(epoch);
    let backup = ethernet::backup(
        ft,
        net,
        epoch,
        &|| platform.now_ns(),
        &|ns| platform.idle_until_ns(ns),
        // A resent frame of the transfer means the live copy missed an acknowledgement: the
        // link answers it as it takes it.
        Meeting::AsSpare(&mut |_| while let Ok(Some(_)) = link.recv(&mut frame) {}),
        injected,
    )
    .map_err(|why| match why {
        ethernet::Refused::NoMeeting => {
            failed("the copy that sent it never met it as the primary of the new epoch")
        }
        _ => failed("the log link could not be made"),
    })?;
    Ok(FtCopy::backup(backup, epoch, false))
}
