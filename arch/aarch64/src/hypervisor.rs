//! Bring-up and the per-CPU run: the bootstrap CPU checks the embedded bundle, prepares every
//! partition and starts the CPUs partitions use; each CPU then runs its vCPU until it stops. A
//! partition stops when all its started vCPUs have; the run ends when every partition has.

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use heapless::Vec;
use spin::Once;
use tandem_core::bundle::Bundle;
use tandem_core::config::{MAX_PARTITIONS, System, Uart};
use tandem_core::partition::{VcpuRecord, VcpuRuntime};
use tandem_core::report::StopReason;

use crate::ledger::VcpuSlot;
use crate::platform::{MAILBOXES, OFF, ON, STARTING, VirtPlatform};
use crate::vcpu::{self, El2Vcpu};
use crate::{boot, console, gic, guest_load, logger, machine, psci, stage2, time};
use tandem_hw::frames;
use tandem_hw::report::{self, Vocabulary};

struct Prepared {
    root: u64,
    dt: u64,
}

struct Booted {
    system: System,
    image_bytes: Vec<(u64, usize), MAX_PARTITIONS>,
    partitions: Vec<Prepared, MAX_PARTITIONS>,
    ledger: u64,
}

static BOOTED: Once<Booted> = Once::new();
static RUNNING: AtomicUsize = AtomicUsize::new(0);
/// Started vCPUs per partition.
static ACTIVE: [AtomicU32; MAX_PARTITIONS] = [const { AtomicU32::new(0) }; MAX_PARTITIONS];
static STARTED: AtomicUsize = AtomicUsize::new(0);

fn fail(what: &str) -> ! {
    defmt::error!("{=str}: the hypervisor cannot continue", what);
    crate::panic::fatal(format_args!("{what}: the hypervisor cannot continue"))
}

/// The physical CPU that runs vCPU `vcpu` of partition `partition`.
pub fn cpu_of(partition: u32, vcpu: u32) -> Option<usize> {
    let p = BOOTED.get()?.system.partitions.get(partition as usize)?;
    p.cpus.get(vcpu as usize).map(|&c| usize::from(c))
}

/// Entry from the board's `board_main` on the bootstrap CPU, at EL2 with the MMU on.
pub fn primary_main(bundle: &'static [u8]) -> ! {
    let boot_counter = time::counter();
    let bundle = match Bundle::parse(bundle) {
        Ok(b) => b,
        Err(e) => {
            machine::init(tandem_core::config::ExitDevice::Semihosting);
            console::emergency(format_args!("the embedded configuration is refused: {e:?}"));
            machine::exit(false)
        }
    };
    let sys = &bundle.system;
    if let Uart::Pl011 { base } = sys.board.console {
        console::init(base.raw());
    }
    machine::init(sys.board.exit);
    logger::init(sys.board.log);
    let hz = time::init(sys.board.timer_hz);
    defmt::info!(
        "Tandem {=str} on {=str}: EL2, {=u8} CPUs, counter {=u64} Hz, entered at count {=u64}",
        env!("CARGO_PKG_VERSION"),
        sys.board.name.as_str(),
        sys.board.cpus,
        hz,
        boot_counter
    );
    if gic::init_distributor(sys.board.gic).is_err() {
        fail("the board describes no GIC");
    }
    if gic::init_cpu().is_err() {
        fail("no GIC redistributor for the bootstrap CPU");
    }

    let (_, image_end) = boot::image_range();
    // SAFETY: the validated hypervisor range holds the image, which ends at `image_end`; only
    // this CPU runs.
    let ledger_base =
        unsafe { tandem_hw::ledger::lay_out::<VcpuSlot>(&sys.board.hypervisor, image_end) }
            .unwrap_or_else(|_| fail("the hypervisor image does not fit its memory range"));

    let mut partitions = Vec::new();
    let mut image_bytes = Vec::new();
    for (id, p) in sys.partitions.iter().enumerate() {
        let image = bundle
            .image(p.image.index)
            .unwrap_or_else(|| fail("a partition image is missing"));
        let dt = guest_load::load(&sys.board, p, id as u32, image).unwrap_or_else(|e| {
            defmt::error!("partition {=str}: {}", p.name.as_str(), e);
            fail("a partition cannot be loaded")
        });
        let root = stage2::build(&p.memory).unwrap_or_else(|_| fail("out of frames for stage 2"));
        // Both vectors hold MAX_PARTITIONS entries, as many as the configuration can have.
        let _ = partitions.push(Prepared { root, dt });
        let _ = image_bytes.push((image.as_ptr() as u64, image.len()));
        defmt::info!(
            "partition {=str}: {=u64} KiB at HPA {=u64:#x}, entry {=u64:#x}, device tree at {=u64:#x}, CPUs {=[u8]}",
            p.name.as_str(),
            p.memory_size() / 1024,
            p.memory[0].hpa.raw(),
            p.image.entry.raw(),
            dt,
            p.cpus.as_slice()
        );
    }
    defmt::info!("{=u64} frames left", frames::remaining());
    RUNNING.store(sys.partitions.len(), Ordering::Release);
    let booted = BOOTED.call_once(|| Booted {
        system: bundle.system.clone(),
        image_bytes,
        partitions,
        ledger: ledger_base,
    });
    for cpu in 1..usize::from(booted.system.board.cpus) {
        if partition_of(&booted.system, cpu).is_some() {
            let before = STARTED.load(Ordering::Acquire);
            let status = psci::cpu_on(cpu as u64, boot::secondary_entry_point(), cpu as u64);
            if status != 0 {
                defmt::error!("PSCI CPU_ON of CPU {=usize} failed: {=i64}", cpu, status);
                fail("a CPU did not start");
            }
            while STARTED.load(Ordering::Acquire) == before {
                core::hint::spin_loop();
            }
        }
    }
    run_cpu(0, booted)
}

/// Entry of every other CPU, from `secondary_entry`, on its own stack with the MMU on.
#[unsafe(no_mangle)]
extern "C" fn secondary_main(cpu: u64) -> ! {
    let cpu = cpu as usize;
    STARTED.fetch_add(1, Ordering::AcqRel);
    if gic::init_cpu().is_err() {
        fail("no GIC redistributor for a secondary CPU");
    }
    run_cpu(cpu, BOOTED.wait())
}

fn partition_of(system: &System, cpu: usize) -> Option<(usize, usize)> {
    system.partitions.iter().enumerate().find_map(|(i, p)| {
        p.cpus
            .iter()
            .position(|&c| usize::from(c) == cpu)
            .map(|v| (i, v))
    })
}

/// Waits for a PSCI CPU_ON from another vCPU of the partition; returns (entry, context).
fn wait_for_cpu_on(cpu: usize) -> (u64, u64) {
    let mailbox = &MAILBOXES[cpu];
    while mailbox.state.load(Ordering::Acquire) != STARTING {
        // SAFETY: WFE only waits; the starting CPU sends SEV after posting.
        unsafe { core::arch::asm!("wfe", options(nomem, nostack)) };
    }
    let start = (
        mailbox.entry.load(Ordering::Relaxed),
        mailbox.context.load(Ordering::Relaxed),
    );
    mailbox.state.store(ON, Ordering::Release);
    start
}

fn run_cpu(cpu: usize, booted: &'static Booted) -> ! {
    let Some((index, vcpu_index)) = partition_of(&booted.system, cpu) else {
        // The bootstrap CPU may host no partition: the CPU that stops the last one ends the run.
        machine::park()
    };
    let partition = &booted.system.partitions[index];
    let prepared = &booted.partitions[index];
    // SAFETY: each CPU takes its own slot, once.
    let VcpuSlot { regs, vgic, record } =
        unsafe { tandem_hw::ledger::slot::<VcpuSlot>(booted.ledger, cpu) };
    // SAFETY: `root` is this partition's stage 2; no guest runs on this CPU yet.
    unsafe { vcpu::configure(prepared.root, (index + 1) as u16, vcpu_index as u64) };
    let mut vcpu = El2Vcpu::new(regs, vgic, vcpu_index as u64, partition.cpus.len() as u64);
    let platform = VirtPlatform::new(&booted.system.board);
    let mut resets = 0;
    let (mut entry, mut x0) = (partition.image.entry.raw(), prepared.dt);
    if vcpu_index == 0 {
        MAILBOXES[cpu].state.store(ON, Ordering::Release);
    } else {
        (entry, x0) = wait_for_cpu_on(cpu);
    }
    ACTIVE[index].fetch_add(1, Ordering::AcqRel);
    loop {
        vcpu.reset(entry, x0);
        *record = VcpuRecord::new(time::now_ns());
        record.resets = resets;
        defmt::info!(
            "partition {=str}: vCPU {=usize} enters on CPU {=usize} at count {=u64}",
            partition.name.as_str(),
            vcpu_index,
            cpu,
            time::counter()
        );
        let stop = VcpuRuntime {
            partition,
            id: index as u32,
            vcpu: vcpu_index as u32,
            record,
            platform: &platform,
        }
        .run(&mut vcpu);
        let alone = ACTIVE[index].load(Ordering::Acquire) == 1;
        match stop {
            StopReason::ResetRequested if alone && vcpu_index == 0 => {
                defmt::info!(
                    "partition {=str} restarts from its image at its own request",
                    partition.name.as_str()
                );
                let (ptr, len) = booted.image_bytes[index];
                // SAFETY: the image is part of the bundle embedded in this hypervisor's image.
                let image = unsafe { core::slice::from_raw_parts(ptr as *const u8, len) };
                if guest_load::load(&booted.system.board, partition, index as u32, image).is_err() {
                    fail("a partition cannot be reloaded");
                }
                resets += 1;
                continue;
            }
            StopReason::VcpuOff if !alone => {
                defmt::info!(
                    "partition {=str}: vCPU {=usize} off",
                    partition.name.as_str(),
                    vcpu_index
                );
                MAILBOXES[cpu].state.store(OFF, Ordering::Release);
                ACTIVE[index].fetch_sub(1, Ordering::AcqRel);
                (entry, x0) = wait_for_cpu_on(cpu);
                ACTIVE[index].fetch_add(1, Ordering::AcqRel);
                continue;
            }
            _ => {}
        }
        report::stop(partition.name.as_str(), stop, record, &WORDS);
        MAILBOXES[cpu].state.store(OFF, Ordering::Release);
        if ACTIVE[index].fetch_sub(1, Ordering::AcqRel) == 1
            && RUNNING.fetch_sub(1, Ordering::AcqRel) == 1
        {
            finish()
        }
        machine::park()
    }
}

const WORDS: Vocabulary = Vocabulary {
    pc: "PC",
    halt: "WFI",
    exit: "exception class",
    detail: "ESR_EL2",
};

fn finish() -> ! {
    defmt::info!("all partitions stopped");
    machine::exit(true)
}
