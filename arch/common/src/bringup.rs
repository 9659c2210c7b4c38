//! Bring-up and the per-CPU run, the same on every architecture (the differences are
//! [`Backend`] hooks): the bootstrap CPU checks the embedded bundle, lays out the hypervisor's
//! memory, loads and prepares every partition and starts the CPUs partitions use; each CPU then
//! runs its vCPU until it stops. A vCPU that stops (other than by CPU_OFF with siblings on)
//! stops its partition's other vCPUs too ([`crate::kick`]); a partition has stopped when all its
//! started vCPUs have, and the run ends when every partition has.

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use heapless::Vec;
use tandem_core::bundle::Bundle;
use tandem_core::config::{
    Ft, FtLink, FtNet, FtRole, ImageSource, MAX_PARTITIONS, Partition, System,
};
use tandem_core::journal::ExitJournal;
use tandem_core::platform::Platform;
use tandem_core::point::ExecPoint;
use tandem_core::record::VcpuRecord;
use tandem_core::replica::{Replica, Solo};
use tandem_core::report::StopReason;
use tandem_core::runtime::VcpuRuntime;
use tandem_recovery::cause::Detected;

use crate::backend::{Backend, BootFiles, Booted};
use crate::console::Console;
pub use crate::ledger::VcpuSlot;
use crate::platform::HwPlatform;
use crate::replication::ethernet::{self, AcrossBoards};
use crate::replication::{BackupCopy, FtCopy, Injected, OnBoard, PrimaryCopy};
use crate::{
    build_id, console_input, frames, images, kick, ledger, net, recovery, replication, report,
    reprotect, siblings, vcpu_power,
};

/// Partitions still running (a spare copy is not one: it waits to be needed, and the run may end
/// without it).
static RUNNING: AtomicUsize = AtomicUsize::new(0);
/// Spare copies that became a backup: from then on they are running partitions.
static ENLISTED: [AtomicBool; MAX_PARTITIONS] = [const { AtomicBool::new(false) }; MAX_PARTITIONS];
/// Partitions whose part of the run is over (stopped, or a failed FT copy whose peer took over).
static RETIRED: [AtomicBool; MAX_PARTITIONS] = [const { AtomicBool::new(false) }; MAX_PARTITIONS];
/// Started vCPUs per partition.
static ACTIVE: [AtomicU32; MAX_PARTITIONS] = [const { AtomicU32::new(0) }; MAX_PARTITIONS];
/// CPUs that have reached Rust code, so the bootstrap CPU starts them one at a time.
static STARTED: AtomicUsize = AtomicUsize::new(0);

fn fail<B: Backend>(what: &str, error: B::Error) -> ! {
    defmt::error!("{=str}: {}", what, error);
    fatal::<B>(what)
}

/// The hypervisor cannot continue: reports `what` and stops the machine as failed.
pub fn fatal<B: Backend>(what: &str) -> ! {
    defmt::error!("{=str}: the hypervisor cannot continue", what);
    Console::<B::Uart>::emergency(format_args!("{what}: the hypervisor cannot continue"));
    B::exit(false)
}

fn partition_of(system: &System, cpu: usize) -> Option<(usize, usize)> {
    system.partitions.iter().enumerate().find_map(|(i, p)| {
        p.cpus
            .iter()
            .position(|&c| usize::from(c) == cpu)
            .map(|v| (i, v))
    })
}

/// The `size` bytes partition `p` boots from at `source`.
fn image_bytes<B: Backend>(
    bundle: &Bundle<'static>,
    sys: &System,
    p: &Partition,
    source: ImageSource,
    size: u64,
) -> &'static [u8] {
    match source {
        ImageSource::Bundle { index } => bundle
            .image(index)
            .unwrap_or_else(|| fatal::<B>("a partition image is missing")),
        ImageSource::Beside { offset, crc } => beside::<B>(sys, p, offset, size, crc),
    }
}

/// A kernel's command line, image `index` of the bundle (the host tool wrote it as UTF-8 without
/// NUL, and the bundle's CRC held).
fn command_line<B: Backend>(bundle: &Bundle<'static>, index: u8) -> &'static str {
    bundle
        .image(index)
        .and_then(|bytes| core::str::from_utf8(bytes).ok())
        .filter(|line| !line.contains('\0'))
        .unwrap_or_else(|| fatal::<B>("a kernel command line is missing or not text"))
}

/// `size` bytes carried beside the hypervisor for partition `p`, `offset` bytes into the
/// board's image area, once they match `crc`: the boot path put them there, and nothing checked
/// them yet.
fn beside<B: Backend>(
    sys: &System,
    p: &Partition,
    offset: u64,
    size: u64,
    crc: u32,
) -> &'static [u8] {
    let bytes = sys
        .board
        .images
        .and_then(|area| images::area(&area.range, &sys.board.hypervisor, offset, size))
        .unwrap_or_else(|| fatal::<B>("a partition image lies outside the board's image area"));
    let found = tandem_core::bundle::crc32(bytes);
    if found != crc {
        defmt::error!(
            "an image of partition {=str} ({=u64} bytes at offset {=u64:#x} of the image area) has CRC {=u32:#010x}, not {=u32:#010x}: the images file beside the hypervisor is missing, damaged or not the one it was built with",
            p.name.as_str(),
            size,
            offset,
            found,
            crc
        );
        fatal::<B>("a partition image carried beside the hypervisor is damaged or missing");
    }
    bytes
}

/// The bootstrap CPU's bring-up, from the board's entry point.
pub fn primary_main<B: Backend>(bundle: &'static [u8], early: B::Early) -> ! {
    let bundle = Bundle::parse(bundle).unwrap_or_else(|e| {
        B::prepare_emergency();
        Console::<B::Uart>::emergency(format_args!("the embedded configuration is refused: {e:?}"));
        B::exit(false)
    });
    let sys = &bundle.system;
    let backend = B::init(sys, early);
    // `cargo xtask monitor` checks its ELF against this before it decodes the rest.
    defmt::info!("build id {=str}", build_id::hex().as_str());

    // SAFETY: the validated hypervisor range holds the image, which ends at `image_end`; only
    // this CPU runs.
    let ledger_base = unsafe {
        ledger::lay_out::<VcpuSlot<B::VcpuState>>(
            &sys.board.hypervisor,
            B::image_end(),
            B::clock_base(),
        )
    }
    .unwrap_or_else(|_| fatal::<B>("the hypervisor image does not fit its memory range"));
    recovery::setup::<B>(ledger_base, sys, backend.cmdline());
    // SAFETY: the ledger was just formatted with this slot type; only this CPU runs.
    replication::publish(unsafe { ledger::pairs::<VcpuSlot<B::VcpuState>>(ledger_base) });
    if let Some(nic) = &sys.board.nic {
        net::start::<B>(nic);
    }

    let mut images = Vec::new();
    let mut boot_args = Vec::new();
    let mut tables = Vec::new();
    for (id, p) in sys.partitions.iter().enumerate() {
        let image = image_bytes::<B>(&bundle, sys, p, p.image.source, p.image.size);
        let initrd = p
            .kernel
            .and_then(|k| k.initrd)
            .map(|initrd| image_bytes::<B>(&bundle, sys, p, initrd.source, initrd.size));
        let cmdline = p
            .kernel
            .and_then(|k| k.cmdline)
            .map_or("", |index| command_line::<B>(&bundle, index));
        let files = BootFiles {
            image,
            initrd,
            cmdline,
        };
        // A backup copy is loaded as its primary, so both guests start the same.
        let arg = backend
            .load_partition(p, p.guest_id(id), &files)
            .unwrap_or_else(|e| fail::<B>("a partition cannot be loaded", e));
        let prepared = backend
            .prepare_partition(p, id as u32)
            .unwrap_or_else(|e| fail::<B>("a partition cannot be prepared", e));
        // The vectors hold MAX_PARTITIONS entries, as many as the configuration can have.
        let _ = images.push(files);
        let _ = boot_args.push(arg);
        let _ = tables.push(prepared);
        defmt::info!(
            "partition {=str}: {=u64} KiB at HPA {=u64:#x}, entry {=u64:#x}, boot argument {=u64:#x}, CPUs {=[u8]}",
            p.name.as_str(),
            p.memory_size() / 1024,
            p.memory[0].hpa.raw(),
            p.image.entry.raw(),
            arg,
            p.cpus.as_slice()
        );
    }
    defmt::info!("{=u64} frames left", frames::remaining());
    let spares = sys.partitions.iter().filter(|p| is_spare(p)).count();
    RUNNING.store(sys.partitions.len() - spares, Ordering::Release);
    let booted = B::booted().call_once(|| Booted {
        backend,
        system: bundle.system.clone(),
        tables,
        images,
        boot_args,
        ledger: ledger_base,
    });
    vcpu_power::publish(&booted.system);
    console_input::setup(&booted.system);
    for cpu in 1..usize::from(booted.system.board.cpus) {
        if partition_of(&booted.system, cpu).is_some() {
            let before = STARTED.load(Ordering::Acquire);
            booted
                .backend
                .start_cpu(cpu)
                .unwrap_or_else(|e| fail::<B>("a CPU did not start", e));
            while STARTED.load(Ordering::Acquire) == before {
                core::hint::spin_loop();
            }
        }
    }
    recovery::arm::<B>();
    run_cpu(0, booted)
}

/// Every other CPU's entry, on its own stack, from the backend's start-up path.
pub fn secondary_main<B: Backend>(cpu: usize) -> ! {
    STARTED.fetch_add(1, Ordering::AcqRel);
    B::init_secondary(cpu).unwrap_or_else(|e| fail::<B>("a secondary CPU cannot start", e));
    run_cpu(cpu, B::booted().wait())
}

fn run_cpu<B: Backend>(cpu: usize, shared: &'static Booted<B>) -> ! {
    let backend = &shared.backend;
    let Some((index, vcpu_index)) = partition_of(&shared.system, cpu) else {
        // A CPU may host no partition: the CPU that stops the last one ends the run.
        B::park()
    };
    backend
        .enable_cpu(cpu)
        .unwrap_or_else(|e| fail::<B>("virtualization cannot be enabled", e));
    let partition = &shared.system.partitions[index];
    // SAFETY: each CPU takes its own slot, once.
    let VcpuSlot {
        state,
        record,
        journal,
        ..
    } = unsafe { ledger::slot::<VcpuSlot<B::VcpuState>>(shared.ledger, cpu) };
    let mut vcpu = backend
        .create_vcpu(
            cpu,
            partition,
            &shared.tables[index],
            index as u32,
            vcpu_index as u32,
            state,
        )
        .unwrap_or_else(|e| fail::<B>("a vCPU cannot be created", e));
    let uart_mmio = shared.system.board.guest_uart;
    let platform = HwPlatform::<B>::new(backend.clock(cpu), &shared.system, uart_mmio, cpu, index);
    let run = Run {
        shared,
        cpu,
        index,
        vcpu_index,
        partition,
        record,
        journal: recovery::journaling().then_some(journal),
        resumed: false,
        platform: &platform,
    };
    match partition.ft {
        None => run.vcpu_loop(&mut vcpu, &mut Solo, partition.name.as_str(), false),
        Some(
            ft @ Ft {
                link: FtLink::Ethernet(net),
                ..
            },
        ) => across_boards(run, &mut vcpu, &ft, &net),
        Some(ft) => on_board(run, &mut vcpu, &ft),
    }
}

/// Runs a copy of a pair on this board, in the role its configuration gives it. Each kind of
/// copy has a function of its own, so a CPU's stack holds only its own kind (a backup's replay
/// queue alone is some 40 KiB).
#[inline(never)]
fn on_board<B: Backend>(run: Run<'_, B>, vcpu: &mut B::Vcpu, ft: &Ft) -> ! {
    let shared = run.shared;
    let backend = &shared.backend;
    let partition = run.partition;
    let platform = run.platform;
    let index = run.index;
    let epoch = replication::FIRST_EPOCH;
    let mut label = heapless::String::<32>::new();
    match ft.role {
        FtRole::Primary => {
            let injected = Injected::from_cmdline(backend.cmdline());
            replication::wait_for_backup(ft, epoch, B::wait_for_event);
            let copy = PrimaryCopy::new(ft, epoch, platform.now_ns(), injected, B::die)
                .unwrap_or_else(|| fatal::<B>("a fault-tolerant pair has two primaries"));
            let mut copy = FtCopy::primary(copy, epoch);
            run.vcpu_loop(vcpu, &mut copy, partition.name.as_str(), false)
        }
        FtRole::Backup => {
            let injected = Injected::from_cmdline(backend.cmdline());
            let copy = BackupCopy::new(ft, epoch, platform.now_ns(), injected)
                .unwrap_or_else(|| fatal::<B>("a fault-tolerant pair has two backups"));
            let spare = reprotect::has_spare(&shared.system.partitions, ft);
            let mut copy = FtCopy::backup(copy, epoch, spare);
            let _ = write!(label, "{} (backup)", partition.name);
            run.vcpu_loop(vcpu, &mut copy, label.as_str(), false)
        }
        FtRole::Spare => {
            let _ = write!(label, "{} (spare)", partition.name);
            match reprotect::wait_as_spare(shared, ft, vcpu, run.record, platform) {
                Ok(mut copy) => {
                    // Counted before it replays, so before its primary can end the run.
                    ENLISTED[index].store(true, Ordering::Release);
                    RUNNING.fetch_add(1, Ordering::AcqRel);
                    run.vcpu_loop(vcpu, &mut copy, label.as_str(), true)
                }
                Err(stop) => {
                    report::stop(label.as_str(), stop, run.record, &B::WORDS);
                    B::park()
                }
            }
        }
    }
}

/// Runs this board's copy of a pair across boards, in the role its NIC's address gives it.
#[inline(never)]
fn across_boards<B: Backend>(run: Run<'_, B>, vcpu: &mut B::Vcpu, ft: &Ft, net: &FtNet) -> ! {
    let backend = &run.shared.backend;
    let name = run.partition.name.as_str();
    let refused = |why: ethernet::Refused| -> ! {
        defmt::error!("partition {=str} cannot join its pair: {}", name, why);
        fatal::<B>("a fault-tolerant partition cannot join its pair across boards")
    };
    let role = ethernet::attach(net).unwrap_or_else(|why| refused(why));
    let epoch = replication::FIRST_EPOCH;
    let injected = Injected::from_cmdline(backend.cmdline());
    let platform = run.platform;
    let now = || platform.now_ns();
    let idle_until = |ns| platform.idle_until_ns(ns);
    let mut label = heapless::String::<32>::new();
    match role {
        FtRole::Primary => {
            let copy = ethernet::primary(
                ft,
                net,
                epoch,
                &now,
                &idle_until,
                &mut |_| {},
                injected,
                B::die,
            )
            .unwrap_or_else(|why| refused(why));
            run.vcpu_loop(vcpu, &mut FtCopy::primary(copy, epoch), name, false)
        }
        FtRole::Backup => {
            let meeting = ethernet::Meeting::AtBoot;
            let copy = ethernet::backup(ft, net, epoch, &now, &idle_until, meeting, injected)
                .unwrap_or_else(|why| refused(why));
            let _ = write!(label, "{} (backup)", name);
            let mut copy = FtCopy::backup(copy, epoch, net.spare.is_some());
            run.vcpu_loop(vcpu, &mut copy, label.as_str(), false)
        }
        FtRole::Spare => {
            let _ = write!(label, "{} (spare)", name);
            let shared = run.shared;
            match reprotect::across_boards::wait_as_spare(
                shared,
                run.partition,
                ft,
                net,
                vcpu,
                run.record,
                platform,
            ) {
                Ok(mut copy) => run.vcpu_loop(vcpu, &mut copy, label.as_str(), true),
                Err(stop) => {
                    report::stop(label.as_str(), stop, run.record, &B::WORDS);
                    retire::<B>(&shared.system, run.index);
                    B::park()
                }
            }
        }
    }
}

/// Records what CPU `cpu`'s vCPU is doing, for a recovery.
fn set_status(cpu: usize, status: u32) {
    if let Some(control) = recovery::control() {
        control.set_status(cpu, status);
    }
}

/// The name of the partition CPU `cpu` runs ("" for none).
pub fn partition_name(system: &System, cpu: usize) -> &str {
    partition_of(system, cpu).map_or("", |(i, _)| system.partitions[i].name.as_str())
}

/// CPU `cpu` after a recovery, on a fresh stack with its class-A state rebuilt: makes its vCPU
/// again, gives it the state captured in the ledger and goes on; a CPU with no running vCPU
/// parks again.
pub fn resume<B: Backend>(shared: &'static Booted<B>, cpu: usize) -> ! {
    let backend = &shared.backend;
    let status = recovery::control().map_or(recovery::control::IDLE, |c| c.status(cpu));
    let Some((index, vcpu_index)) = partition_of(&shared.system, cpu) else {
        B::park()
    };
    match status {
        recovery::control::RUNNING => {}
        // Its vCPU had not started (a secondary waiting for CPU_ON, or one off again): it
        // waits for its start as at cold boot, nothing of it to resume.
        recovery::control::IDLE => run_cpu(cpu, shared),
        _ => B::park(),
    }
    backend
        .enable_cpu(cpu)
        .unwrap_or_else(|e| fail::<B>("virtualization cannot be enabled again", e));
    let partition = &shared.system.partitions[index];
    // SAFETY: each CPU takes its own slot, once per recovery; the abandoned loop's reference
    // to it is gone with its stack.
    let VcpuSlot {
        state,
        record,
        journal,
        failed,
    } = unsafe { ledger::slot::<VcpuSlot<B::VcpuState>>(shared.ledger, cpu) };
    let preserved_ok = *failed == 0;
    let mut vcpu = backend
        .create_vcpu(
            cpu,
            partition,
            &shared.tables[index],
            index as u32,
            vcpu_index as u32,
            state,
        )
        .unwrap_or_else(|e| fail::<B>("a vCPU cannot be made again", e));
    let resumed = if preserved_ok {
        B::resume_vcpu(&mut vcpu).map_err(|e| {
            defmt::warn!(
                "recovery: partition {=str}'s preserved vCPU state is refused: {}",
                partition.name.as_str(),
                e
            )
        })
    } else {
        Err(())
    };
    let platform = HwPlatform::<B>::new(
        backend.clock(cpu),
        &shared.system,
        shared.system.board.guest_uart,
        cpu,
        index,
    );
    recovery::resumed::<B>(shared);
    if resumed.is_err() {
        *failed = 0;
        kick::stop_partition::<B>(partition, index, cpu);
        defmt::warn!(
            "partition {=str} stopped: its state did not survive the recovery",
            partition.name.as_str()
        );
        set_status(cpu, recovery::control::STOPPED);
        vcpu_power::set_off(cpu);
        if ACTIVE[index].fetch_sub(1, Ordering::AcqRel) == 1 {
            retire::<B>(&shared.system, index);
        }
        B::park()
    }
    platform.audit_resume();
    Run {
        shared,
        cpu,
        index,
        vcpu_index,
        partition,
        record,
        journal: Some(journal),
        resumed: true,
        platform: &platform,
    }
    .vcpu_loop(&mut vcpu, &mut Solo, partition.name.as_str(), true)
}

fn is_spare(p: &Partition) -> bool {
    p.ft.is_some_and(|ft| ft.role == FtRole::Spare)
}

/// What the hardware layer does when a copy's replica pauses its vCPU ([`StopReason::Paused`]);
/// returns whether the vCPU runs on.
trait Paused<B: Backend> {
    fn paused(
        &mut self,
        shared: &Booted<B>,
        index: usize,
        vcpu: &mut B::Vcpu,
        record: &VcpuRecord,
        platform: &HwPlatform<B>,
    ) -> bool;
}

impl<B: Backend> Paused<B> for Solo {
    fn paused(
        &mut self,
        _: &Booted<B>,
        _: usize,
        _: &mut B::Vcpu,
        _: &VcpuRecord,
        _: &HwPlatform<B>,
    ) -> bool {
        false
    }
}

impl<B: Backend> Paused<B> for FtCopy<OnBoard> {
    /// A copy that went live re-protects the partition onto its spare, and runs on either way.
    fn paused(
        &mut self,
        shared: &Booted<B>,
        index: usize,
        vcpu: &mut B::Vcpu,
        record: &VcpuRecord,
        platform: &HwPlatform<B>,
    ) -> bool {
        reprotect::reprotect(shared, index, vcpu, record, self, platform);
        true
    }
}

impl<B: Backend> Paused<B> for FtCopy<AcrossBoards> {
    /// A copy that went live re-protects the partition onto the spare board, and runs on either
    /// way.
    fn paused(
        &mut self,
        shared: &Booted<B>,
        index: usize,
        vcpu: &mut B::Vcpu,
        record: &VcpuRecord,
        platform: &HwPlatform<B>,
    ) -> bool {
        reprotect::across_boards::reprotect(shared, index, vcpu, record, self, platform);
        true
    }
}

/// Partition `index` is done; the last one ends the run. Each is retired once, whichever of an
/// FT pair's copies gets there first; a spare counts only once it became a backup. Once every
/// copy of a partition is done, the console switch hears it stopped.
fn retire<B: Backend>(system: &System, index: usize) {
    if is_spare(&system.partitions[index]) && !ENLISTED[index].load(Ordering::Acquire) {
        return;
    }
    // Sequentially consistent, with the loads below: of two copies retiring at once, at least
    // one sees the other's flag.
    if RETIRED[index].swap(true, Ordering::SeqCst) {
        return;
    }
    if RUNNING.fetch_sub(1, Ordering::AcqRel) == 1 {
        defmt::info!("all partitions stopped");
        B::exit(true)
    }
    let id = system.partitions[index].guest_id(index);
    let done = system
        .partitions
        .iter()
        .enumerate()
        .filter(|&(i, p)| p.guest_id(i) == id)
        .all(|(i, p)| {
            RETIRED[i].load(Ordering::SeqCst) || is_spare(p) && !ENLISTED[i].load(Ordering::Acquire)
        });
    if done {
        console_input::stopped::<B::Uart>(system, index);
    }
}

/// What one CPU's vCPU loop works with.
struct Run<'a, B: Backend> {
    shared: &'static Booted<B>,
    cpu: usize,
    index: usize,
    vcpu_index: usize,
    partition: &'static Partition,
    record: &'static mut VcpuRecord,
    /// Where exits are journaled for a recovery, when recovery is on.
    journal: Option<&'static mut ExitJournal>,
    /// The vCPU goes on after a recovery: it was running, and its state is in the ledger.
    resumed: bool,
    platform: &'a HwPlatform<B>,
}

impl<B: Backend> Run<'_, B> {
    /// Runs the vCPU with `replica` until its partition stops; `label` names this copy in the log.
    /// A `restored` vCPU goes on from the state it was given instead of starting from reset.
    fn vcpu_loop<R: Replica + Paused<B>>(
        self,
        vcpu: &mut B::Vcpu,
        replica: &mut R,
        label: &str,
        mut restored: bool,
    ) -> ! {
        let Run {
            shared,
            cpu,
            index,
            vcpu_index,
            partition,
            record,
            mut journal,
            resumed,
            platform,
        } = self;
        let backend = &shared.backend;
        let mut resets = record.resets;
        let (mut entry, mut arg) = (partition.image.entry.raw(), shared.boot_args[index]);
        // A resumed vCPU's power state and count survived the recovery with the rest of the
        // hypervisor's data.
        if !resumed {
            if vcpu_index == 0 {
                vcpu_power::set_on(cpu);
            } else {
                (entry, arg) = vcpu_power::wait_for_start(cpu, B::wait_for_event);
            }
            ACTIVE[index].fetch_add(1, Ordering::AcqRel);
        }
        set_status(cpu, recovery::control::RUNNING);
        loop {
            if !core::mem::take(&mut restored) {
                B::reset_vcpu(vcpu, entry, arg)
                    .unwrap_or_else(|e| fail::<B>("a vCPU cannot be reset", e));
                *record = VcpuRecord::new(platform.now_ns());
                record.resets = resets;
                defmt::info!(
                    "partition {=str}: vCPU {=usize} enters on CPU {=usize} at {=str} {=u64}",
                    label,
                    vcpu_index,
                    cpu,
                    B::WORDS.counter,
                    platform.counter()
                );
            }
            let stop = VcpuRuntime {
                partition,
                id: partition.guest_id(index),
                vcpu: vcpu_index as u32,
                record,
                platform,
                replica,
                exit_at: ExecPoint::default(),
                journal: journal.as_deref_mut(),
            }
            .run(vcpu);
            // A VM entry cannot fail for anything the guest did: the hypervisor's own state is
            // wrong, which a recovery rebuilds, unless the vCPU fails again straight after one
            // (its preserved state is the problem, and only its partition stops).
            if let StopReason::EntryFailed(_) = stop
                && !platform.auditing()
            {
                B::detected(Detected::EntryFailed, 0, 0);
            }
            let alone = ACTIVE[index].load(Ordering::Acquire) == 1;
            match stop {
                StopReason::Paused if replica.paused(shared, index, vcpu, record, platform) => {
                    restored = true;
                    continue;
                }
                StopReason::ResetRequested
                    if alone && vcpu_index == 0 && partition.ft.is_none() =>
                {
                    defmt::info!(
                        "partition {=str} restarts from its image at its own request",
                        label
                    );
                    arg = backend
                        .load_partition(partition, index as u32, &shared.images[index])
                        .unwrap_or_else(|e| fail::<B>("a partition cannot be reloaded", e));
                    resets += 1;
                    continue;
                }
                StopReason::VcpuOff if !alone => {
                    defmt::info!("partition {=str}: vCPU {=usize} off", label, vcpu_index);
                    vcpu_power::set_off(cpu);
                    siblings::clear_sgis(cpu);
                    ACTIVE[index].fetch_sub(1, Ordering::AcqRel);
                    set_status(cpu, recovery::control::IDLE);
                    (entry, arg) = vcpu_power::wait_for_start(cpu, B::wait_for_event);
                    set_status(cpu, recovery::control::RUNNING);
                    ACTIVE[index].fetch_add(1, Ordering::AcqRel);
                    continue;
                }
                _ => {}
            }
            // Whatever stopped this vCPU stops its partition: the siblings follow.
            kick::stop_partition::<B>(partition, index, cpu);
            report::stop(label, stop, record, &B::WORDS);
            set_status(cpu, recovery::control::STOPPED);
            vcpu_power::set_off(cpu);
            if ACTIVE[index].fetch_sub(1, Ordering::AcqRel) == 1 {
                // A copy that went live also ends its failed peers' part of the run: the pair's
                // primary and backup (a spare it re-protected onto is its backup, and ends its
                // own part).
                let pair = partition
                    .ft
                    .filter(|_| replica.took_over())
                    .map(|ft| ft.pair);
                let peers = shared
                    .system
                    .partitions
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| {
                        pair.is_some() && p.ft.map(|ft| ft.pair) == pair && !is_spare(p)
                    })
                    .map(|(i, _)| i);
                for retiring in core::iter::once(index).chain(peers) {
                    retire::<B>(&shared.system, retiring);
                }
            }
            B::park()
        }
    }
}
