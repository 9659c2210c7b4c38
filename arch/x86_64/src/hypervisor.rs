//! Bring-up and the per-CPU run: the bootstrap CPU checks the embedded bundle, prepares every
//! partition and starts the CPUs partitions use; each CPU then runs its partition's vCPU until
//! the partition stops. The run ends when every partition has stopped.

use core::sync::atomic::{AtomicUsize, Ordering};

use heapless::Vec;
use spin::Once;
use tandem_core::bundle::Bundle;
use tandem_core::config::{MAX_PARTITIONS, System, Uart};
use tandem_core::partition::{VcpuRecord, VcpuRuntime};
use x86_64::instructions::port::PortWriteOnly;

use crate::bootinfo::BootInfo;
use crate::inject::Injection;
use crate::io::{halt_forever, rdtsc};
use crate::ledger::VcpuSlot;
use crate::platform::PcPlatform;
use crate::vmx::{self, Caps, PartitionTables, VmxVcpu};
use crate::{apic, boot, console, cpu, guest_load, logger, machine, smp, time};
use tandem_hw::frames;
use tandem_hw::report::{self, Vocabulary};

struct Booted {
    system: System,
    caps: Caps,
    tables: Vec<PartitionTables, MAX_PARTITIONS>,
    ledger: u64,
}

static BOOTED: Once<Booted> = Once::new();
static RUNNING: AtomicUsize = AtomicUsize::new(0);

fn port(uart: Uart) -> u16 {
    match uart {
        Uart::Pio16550 { port } => port,
        // Validation rejects PL011s and semihosting on x86 boards.
        Uart::Pl011 { .. } | Uart::Semihosting => 0x3f8,
    }
}

fn fail(what: &str) -> ! {
    defmt::error!("{=str}: the hypervisor cannot continue", what);
    console::emergency(format_args!("{what}: the hypervisor cannot continue"));
    machine::exit(false)
}

/// Masks both 8259 PICs: the hypervisor takes no device interrupts, and a pending one would turn
/// every VM entry into an immediate external-interrupt exit.
fn mask_pic() {
    // SAFETY: the PIC data ports belong to the hypervisor; masking has no other effect.
    unsafe {
        PortWriteOnly::<u8>::new(0x21).write(0xff);
        PortWriteOnly::<u8>::new(0xa1).write(0xff);
    }
}

/// Entry from the board's `board_main` on the bootstrap CPU.
pub fn primary_main(magic: u32, info: u64, bundle: &'static [u8]) -> ! {
    let boot_tsc = rdtsc();
    let boot = BootInfo::parse(magic, info);
    let bundle = match Bundle::parse(bundle) {
        Ok(b) => b,
        Err(e) => {
            console::init(0x3f8);
            console::emergency(format_args!("the embedded configuration is refused: {e:?}"));
            machine::exit(false)
        }
    };
    let sys = &bundle.system;
    console::init(port(sys.board.console));
    logger::init(port(sys.board.log));
    machine::init(sys.board.exit);
    mask_pic();
    let hz = time::init(sys.board.timer_hz);
    defmt::info!(
        "Tandem {=str} on {=str}: booted by {=str}, {=u8} CPUs, TSC {=u64} Hz, entered at TSC {=u64}",
        env!("CARGO_PKG_VERSION"),
        sys.board.name.as_str(),
        boot.loader_name(),
        sys.board.cpus,
        hz,
        boot_tsc
    );
    if !boot.cmdline().is_empty() {
        defmt::info!("boot command line: \"{=str}\"", boot.cmdline());
    }
    cpu::init_idt();
    cpu::init(0);
    if let Some(injection) = Injection::from_cmdline(boot.cmdline()) {
        injection.fire();
    }
    let caps = vmx::probe().unwrap_or_else(|e| {
        defmt::error!("VT-x is not usable: {}", e);
        fail("VT-x is not usable")
    });

    let (_, image_end) = boot::image_range();
    // SAFETY: the validated hypervisor range holds the image, which ends at `image_end`; only
    // this CPU runs.
    let ledger_base =
        unsafe { tandem_hw::ledger::lay_out::<VcpuSlot>(&sys.board.hypervisor, image_end) }
            .unwrap_or_else(|_| fail("the hypervisor image does not fit its memory range"));

    let mut tables = Vec::new();
    for p in &sys.partitions {
        let image = bundle
            .image(p.image.index)
            .unwrap_or_else(|| fail("a partition image is missing"));
        guest_load::load(p, image);
        let t = PartitionTables::build(p).unwrap_or_else(|_| fail("out of frames for EPT"));
        // The vector holds MAX_PARTITIONS entries, as many as the configuration can have.
        let _ = tables.push(t);
        defmt::info!(
            "partition {=str}: {=u64} KiB at HPA {=u64:#x}, entry {=u64:#x}, CPUs {=[u8]}",
            p.name.as_str(),
            p.memory_size() / 1024,
            p.memory[0].hpa.raw(),
            p.image.entry.raw(),
            p.cpus.as_slice()
        );
    }
    defmt::info!("{=u64} frames left", frames::remaining());
    RUNNING.store(sys.partitions.len(), Ordering::Release);
    let booted = BOOTED.call_once(|| Booted {
        system: bundle.system.clone(),
        caps,
        tables,
        ledger: ledger_base,
    });
    for cpu in 1..usize::from(booted.system.board.cpus) {
        if partition_of(&booted.system, cpu).is_some() {
            smp::start_ap(cpu);
        }
    }
    run_cpu(0, booted)
}

/// Entry of every other CPU, from the trampoline, on its own stack.
pub fn secondary_main(cpu: usize) -> ! {
    cpu::init(cpu);
    run_cpu(cpu, BOOTED.wait())
}

fn partition_of(system: &System, cpu: usize) -> Option<usize> {
    system
        .partitions
        .iter()
        .position(|p| p.cpus.contains(&(cpu as u8)))
}

fn run_cpu(cpu: usize, booted: &'static Booted) -> ! {
    let Some(index) = partition_of(&booted.system, cpu) else {
        // The bootstrap CPU may host no partition; it then only waits for the end of the run.
        while RUNNING.load(Ordering::Acquire) != 0 {
            core::hint::spin_loop();
        }
        finish()
    };
    if let Err(e) = vmx::enable(&booted.caps) {
        defmt::error!("CPU {=usize}: VMXON failed: {}", cpu, e);
        fail("VMXON failed");
    }
    let partition = &booted.system.partitions[index];
    // SAFETY: each CPU takes its own slot, once.
    let VcpuSlot { regs, record } =
        unsafe { tandem_hw::ledger::slot::<VcpuSlot>(booted.ledger, cpu) };
    let vpid = (index + 1) as u16;
    let mut vcpu = VmxVcpu::new(
        &booted.caps,
        cpu,
        partition,
        &booted.tables[index],
        vpid,
        regs,
    )
    .unwrap_or_else(|e| {
        defmt::error!("CPU {=usize}: VMCS setup failed: {}", cpu, e);
        fail("VMCS setup failed")
    });
    *record = VcpuRecord::new(time::now_ns());
    let platform = PcPlatform {
        can_halt: apic::init_wakeup(),
    };
    defmt::info!(
        "partition {=str}: vCPU 0 enters on CPU {=usize} at TSC {=u64}, idles by {=str}",
        partition.name.as_str(),
        cpu,
        rdtsc(),
        if platform.can_halt {
            "halting"
        } else {
            "spinning"
        }
    );
    let stop = VcpuRuntime {
        partition,
        id: index as u32,
        vcpu: 0,
        record,
        platform: &platform,
    }
    .run(&mut vcpu);
    report::stop(partition.name.as_str(), stop, record, &WORDS);
    if RUNNING.fetch_sub(1, Ordering::AcqRel) == 1 {
        finish()
    }
    halt_forever()
}

const WORDS: Vocabulary = Vocabulary {
    pc: "RIP",
    halt: "halted",
    exit: "exit",
    detail: "qualification",
};

fn finish() -> ! {
    defmt::info!("all partitions stopped");
    machine::exit(true)
}
