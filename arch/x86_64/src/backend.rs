//! The x86_64 half of bring-up (see `tandem_hw::backend`): PC consoles and time, the 8259 PICs
//! masked, VT-x probed, each partition's EPT and bitmaps, application processors started through
//! the INIT-SIPI-SIPI trampoline, and a VMX vCPU per CPU.

use spin::Once;
use tandem_core::addr::HostPhysAddr;
use tandem_core::beside::IMAGES_MODULE;
use tandem_core::config::{ImageCarrier, Partition, PhysRange, System, Uart};
use tandem_core::journal::MAX_GPRS;
use tandem_hw::backend::{Backend, BootFiles, Booted};
use tandem_hw::bringup;
use tandem_hw::console::ConsoleUart;
use tandem_hw::dirty::TrackError;
use tandem_hw::guest_memory::{self, Coherence, LayoutDiffers};
use tandem_hw::images;
use tandem_hw::recovery::control::Control;
use tandem_hw::report::Vocabulary;
use tandem_recovery::cause::{Detected, ResetCause};
use x86_64::instructions::port::PortWriteOnly;

use crate::bootinfo::BootInfo;
use crate::clock::PcClock;
use crate::console::Console;
use crate::inject::Injection;
use crate::io::{halt_forever, rdtsc};
use crate::serial;
use crate::vmx::{
    self, Caps, EnableError, PartitionTables, SetupError, SnapshotError, VcpuState, VmxVcpu,
};
use crate::{apic, boot, cpu, guest_load, logger, machine, nmi_watchdog, recovery, smp, time};

/// Why a bring-up step failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum PcError {
    /// No frames left for EPT tables or bitmaps.
    OutOfFrames,
    /// VMXON failed on this CPU.
    Enable(EnableError),
    /// The VMCS could not be set up.
    Vmcs(SetupError),
    /// A vCPU's state could not be captured or given to its copy.
    Snapshot(SnapshotError),
    /// Dirty-page tracking could not start.
    Dirty(TrackError),
    /// The spare copy of a partition has another guest-physical layout.
    Copy(LayoutDiffers),
}

/// Caches are coherent with every access on x86, so copies of guest memory need no maintenance.
pub struct Coherent;

impl Coherence for Coherent {
    fn before_read(_: u64, _: u64) {}
    fn after_write(_: u64, _: u64) {}
}

/// What the bootstrap CPU knows from its loader, read before anything else.
pub struct Early {
    boot_tsc: u64,
    boot: BootInfo,
}

/// The x86_64 backend: VT-x capabilities, and the fault to inject once guests run.
pub struct PcBackend {
    caps: Caps,
    injection: Option<Injection>,
    cmdline: &'static str,
}

static BOOTED: Once<Booted<PcBackend>> = Once::new();

/// Entry from the board's `board_main` on the bootstrap CPU.
pub fn primary_main(magic: u32, info: u64, bundle: &'static [u8]) -> ! {
    let early = Early {
        boot_tsc: rdtsc(),
        boot: BootInfo::parse(magic, info),
    };
    bringup::primary_main::<PcBackend>(bundle, early)
}

/// Where the NMI watchdog sends a CPU it found hung, on a fresh stack: the recovery.
extern "C" fn hung_entry(cpu: usize) -> ! {
    tandem_hw::recover::recover::<PcBackend>(Detected::Hang, cpu as u64, 0);
    halt_forever()
}

/// Entry of every other CPU, from the trampoline (`smp.rs`), on its own stack.
#[unsafe(no_mangle)]
extern "C" fn ap_entry(cpu: u64) -> ! {
    bringup::secondary_main::<PcBackend>(cpu as usize)
}

fn port(uart: Uart) -> u16 {
    match uart {
        Uart::Pio16550 { port } => port,
        // Validation rejects PL011s and semihosting on x86 boards.
        Uart::Pl011 { .. } | Uart::Semihosting => 0x3f8,
    }
}

/// Moves the images module the boot loader placed where it chose into the board's image area,
/// or stops the machine saying why it cannot.
fn gather_images(sys: &System, boot: &BootInfo) {
    let (start, end) = boot::image_range();
    let image = PhysRange {
        base: HostPhysAddr::new(start),
        size: end - start,
    };
    // SAFETY: called from `init` on the bootstrap CPU, which since the loader handed over has
    // written only the hypervisor's image (`.bss`, boot stack and tables, statics) and device
    // registers: the frame pool, the ledger and the partitions come after `init`. The loader's
    // information was read and its command line copied (`BootInfo::parse`).
    match unsafe { images::gather(sys, boot.images, &image) } {
        Ok(Some(moved)) => defmt::info!(
            "images module `{=str}`: {=u64} bytes at {=u64:#x}, moved to the image area at {=u64:#x} ({=u32} module(s) passed)",
            IMAGES_MODULE,
            moved.len,
            moved.from,
            moved.to,
            boot.modules
        ),
        Ok(None) => {}
        Err(error) => {
            defmt::error!(
                "{}; booted by {=str}, which passed {=u32} module(s)",
                defmt::Display2Format(&error),
                boot.loader_name(),
                boot.modules
            );
            Console::emergency(format_args!("{error}"));
            bringup::fatal::<PcBackend>("the images carried beside the hypervisor cannot be used")
        }
    }
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

impl Backend for PcBackend {
    type Early = Early;
    type Error = PcError;
    type VcpuState = VcpuState;
    type Coherent = Coherent;
    type Tables = PartitionTables;
    type Vcpu = VmxVcpu;
    type Uart = serial::Uart;
    type Clock = PcClock;
    const WORDS: Vocabulary = Vocabulary {
        pc: "RIP",
        halt: "halted",
        exit: "exit",
        detail: "qualification",
        counter: "TSC",
    };

    fn prepare_emergency() {
        Console::init(<serial::Uart as ConsoleUart>::DEFAULT);
    }

    fn init(sys: &System, early: Early) -> Self {
        Console::init(port(sys.board.console).into());
        logger::init(port(sys.board.log));
        machine::init(sys.board.exit);
        mask_pic();
        let hz = time::init(sys.board.timer_hz);
        defmt::info!(
            "Tandem {=str} on {=str}: booted by {=str}, {=u8} CPUs, TSC {=u64} Hz, entered at TSC {=u64}",
            env!("CARGO_PKG_VERSION"),
            sys.board.name.as_str(),
            early.boot.loader_name(),
            sys.board.cpus,
            hz,
            early.boot_tsc
        );
        let cmdline = early.boot.cmdline();
        if !cmdline.is_empty() {
            defmt::info!("boot command line: \"{=str}\"", cmdline);
        }
        if early.boot.malformed {
            defmt::warn!("the boot loader's information is malformed; read up to where it broke");
        }
        if sys
            .board
            .images
            .is_some_and(|area| area.carrier == ImageCarrier::Multiboot2)
        {
            gather_images(sys, &early.boot);
        }
        cpu::init_idt();
        cpu::init(0);
        tandem_hw::recovery::trigger::plan_from(cmdline);
        nmi_watchdog::ask_from(cmdline);
        recovery::set_follow(tandem_hw::recover::follower::<Self>());
        let injection = Injection::from_cmdline(cmdline);
        if let Some(injection) = injection {
            injection.fire();
        }
        let caps = vmx::probe().unwrap_or_else(|e| {
            defmt::error!("VT-x is not usable: {}", e);
            bringup::fatal::<Self>("VT-x is not usable")
        });
        Self {
            caps,
            injection,
            cmdline,
        }
    }

    fn image_end() -> u64 {
        boot::image_range().1
    }

    /// x86 partitions boot test guests and ELF or flat images only (the validator refuses a
    /// kernel's initrd and command line here).
    fn load_partition(
        &self,
        partition: &Partition,
        _: u32,
        files: &BootFiles,
    ) -> Result<u64, PcError> {
        guest_load::load(partition, files.image);
        Ok(0)
    }

    fn prepare_partition(&self, partition: &Partition, _: u32) -> Result<PartitionTables, PcError> {
        PartitionTables::build(partition).map_err(|_| PcError::OutOfFrames)
    }

    fn booted() -> &'static Once<Booted<Self>> {
        &BOOTED
    }

    fn start_cpu(&self, cpu: usize) -> Result<(), PcError> {
        smp::start_ap(cpu);
        Ok(())
    }

    fn init_secondary(cpu: usize) -> Result<(), PcError> {
        cpu::init(cpu);
        Ok(())
    }

    fn enable_cpu(&self, cpu: usize) -> Result<(), PcError> {
        vmx::enable(&self.caps, cpu).map_err(PcError::Enable)
    }

    fn create_vcpu(
        &'static self,
        cpu: usize,
        partition: &'static Partition,
        tables: &'static PartitionTables,
        id: u32,
        _: u32,
        state: &'static mut VcpuState,
    ) -> Result<VmxVcpu, PcError> {
        // VPID 0 is the hypervisor's own (SDM Vol. 3C, 29.1).
        let vpid = (id + 1) as u16;
        let vcpu =
            VmxVcpu::new(&self.caps, cpu, partition, tables, vpid, state).map_err(PcError::Vmcs)?;
        if let (0, Some(injection)) = (cpu, self.injection) {
            injection.fire_at_guests(BOOTED.wait().system());
        }
        Ok(vcpu)
    }

    fn reset_vcpu(vcpu: &mut VmxVcpu, entry: u64, _: u64) -> Result<(), PcError> {
        vcpu.reset(entry).map_err(PcError::Vmcs)
    }

    fn snapshot_vcpu(vcpu: &VmxVcpu, into: &mut VcpuState) -> Result<(), PcError> {
        vcpu.snapshot(into).map_err(PcError::Snapshot)
    }

    fn restore_vcpu(vcpu: &mut VmxVcpu, from: &VcpuState) -> Result<(), PcError> {
        vcpu.restore(from).map_err(PcError::Snapshot)
    }

    fn copy_guest_pages(
        &self,
        from: &Partition,
        to: &Partition,
        first: u64,
        count: u64,
    ) -> Result<(), PcError> {
        guest_memory::copy_pages::<Coherent>(from, to, first, count).map_err(PcError::Copy)
    }

    fn start_dirty_tracking(vcpu: &mut VmxVcpu) -> Result<u64, PcError> {
        vcpu.dirty().start().map_err(PcError::Dirty)
    }

    fn stop_dirty_tracking(vcpu: &mut VmxVcpu) {
        vcpu.dirty().stop()
    }

    fn take_dirty(vcpu: &mut VmxVcpu, out: &mut [u64]) -> usize {
        vcpu.dirty().take(out)
    }

    fn dirty_count(vcpu: &VmxVcpu) -> u64 {
        vcpu.dirty_count()
    }

    fn clock(&self, cpu: usize) -> PcClock {
        let clock = PcClock {
            can_halt: apic::init_wakeup(),
        };
        defmt::info!(
            "CPU {=usize} idles by {=str}",
            cpu,
            if clock.can_halt {
                "halting"
            } else {
                "spinning"
            }
        );
        clock
    }

    fn wait_for_event() {
        core::hint::spin_loop();
    }

    /// Waiting CPUs spin: nothing to wake.
    fn wake_cpus() {}

    /// An x86_64 partition has one vCPU (validation), so no vCPU has a sibling to kick it.
    fn kick_cpu(_: usize) {}

    fn clear_kick() {}

    fn exit(success: bool) -> ! {
        machine::exit(success)
    }

    fn park() -> ! {
        halt_forever()
    }

    /// Interrupts masked, out of VMX operation, halted: the CPU does nothing more. An NMI only
    /// runs the counting handler and halts again.
    fn die() -> ! {
        x86_64::instructions::interrupts::disable();
        vmx::disable();
        halt_forever()
    }

    fn pci_bar0(ids: &[(u16, u16)]) -> Option<u64> {
        crate::pci::bar0(ids)
    }

    fn cmdline(&self) -> &'static str {
        self.cmdline
    }

    const RECOVERS: bool = true;

    fn cpu_index() -> usize {
        apic::cpu_index()
    }

    fn clock_base() -> (u64, u64) {
        time::base()
    }

    fn keep_pristine(control: &Control) -> u64 {
        recovery::keep_pristine(control).unwrap_or(0)
    }

    fn recovery_now_ns() -> u64 {
        time::now_ns()
    }

    fn start_watchdog() {
        recovery::set_hang(hung_entry);
        if nmi_watchdog::wanted() {
            nmi_watchdog::start();
        }
    }

    fn stop_done() {
        recovery::stop_done()
    }

    fn stop_cpus(mask: u32) {
        recovery::stop_cpus(mask)
    }

    fn capture_vcpu(cpu: usize, state: &mut VcpuState) -> bool {
        recovery::capture_vcpu(cpu, state)
    }

    fn on_fresh_stack(cpu: usize, f: extern "C" fn(usize) -> !) -> ! {
        recovery::on_fresh_stack(cpu, f)
    }

    fn reset_log() {
        logger::reset_log()
    }

    fn repair_code(control: &Control, reload: bool) -> Result<(), ResetCause> {
        recovery::repair_code(control, reload)
    }

    fn roll_back(state: &mut VcpuState, pc: u64, gprs: &[u64; MAX_GPRS]) {
        recovery::roll_back(state, pc, gprs)
    }

    fn rebuild_cpu(cpu: usize) {
        cpu::init(cpu);
    }

    fn resume_vcpu(vcpu: &mut VmxVcpu) -> Result<(), PcError> {
        vcpu.resume().map_err(PcError::Snapshot)
    }

    fn inject_at(cpu: usize, beats: u64) {
        recovery::inject_at(cpu, beats)
    }

    fn detected(cause: Detected, detail: u64, pc: u64) {
        tandem_hw::recover::recover::<Self>(cause, detail, pc)
    }

    fn full_reset() -> ! {
        recovery::full_reset()
    }
}
