//! The aarch64 half of bring-up (see `tandem_hw::backend`): the PL011 console, the semihosting log
//! and exit, the generic timer, the GICv3, each partition's stage 2 and device tree, secondary CPUs
//! started through PSCI CPU_ON, and an EL2 vCPU per CPU.

use core::fmt::Write;

use spin::Once;
use tandem_core::config::{Board, ExitDevice, Partition, System, Uart};
use tandem_core::fdt::cpus::CpuStart;
use tandem_core::fdt::facts::Disagreement;
use tandem_core::journal::MAX_GPRS;
use tandem_hw::backend::{Backend, BootFiles, Booted};
use tandem_hw::bringup;
use tandem_hw::dirty::{DirtyPages, TrackError};
use tandem_hw::frames::OutOfFrames;
use tandem_hw::guest_memory::{self, LayoutDiffers};
use tandem_hw::recovery::control::Control;
use tandem_hw::report::Vocabulary;
use tandem_recovery::cause::{Detected, ResetCause};

use crate::clock::VirtClock;
use crate::console::Console;
use crate::gic::GicError;
use crate::guest_load::{Coherent, LoadError};
use crate::pl011::Pl011;
use crate::vcpu::{self, El2Vcpu};
use crate::vcpu_state::VcpuState;
use crate::{
    boot, firmware, gic, guest_load, inject, logger, machine, pmu, pristine, psci, recovery,
    stage2, stop, sysreg, time, watchdog,
};

/// Why a bring-up step failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum VirtError {
    /// No frames left for stage-2 tables.
    OutOfFrames,
    /// A partition's memory could not be prepared.
    Load(LoadError),
    /// PSCI CPU_ON refused to start a CPU, with this status.
    CpuOn(i64),
    /// This CPU's GIC interface could not be set up.
    Gic(GicError),
    /// Dirty-page tracking could not start.
    Dirty(TrackError),
    /// The spare copy of a partition has another guest-physical layout.
    Copy(LayoutDiffers),
}

/// The aarch64 backend: the board's facts.
pub struct VirtBackend {
    board: Board,
    /// The boot command line (`/chosen/bootargs` of the machine's device tree).
    cmdline: &'static str,
}

static BOOTED: Once<Booted<VirtBackend>> = Once::new();

/// Entry from the board's `board_main` on the bootstrap CPU, at EL2 with the MMU on.
pub fn primary_main(bundle: &'static [u8]) -> ! {
    bringup::primary_main::<VirtBackend>(bundle, time::counter())
}

/// Entry of every other CPU, from `secondary_entry` (`boot.rs`), on its own stack with the MMU on.
#[unsafe(no_mangle)]
extern "C" fn secondary_main(cpu: u64) -> ! {
    bringup::secondary_main::<VirtBackend>(cpu as usize)
}

impl Backend for VirtBackend {
    /// The counter value at entry, for the banner.
    type Early = u64;
    type Error = VirtError;
    type VcpuState = VcpuState;
    type Coherent = Coherent;
    type Tables = u64;
    type Vcpu = El2Vcpu;
    type Uart = Pl011;
    type Clock = VirtClock;
    const WORDS: Vocabulary = Vocabulary {
        pc: "PC",
        halt: "WFI",
        exit: "exception class",
        detail: "ESR_EL2",
        counter: "count",
    };

    /// The console's default PL011 needs no set-up; QEMU `virt` ends runs through semihosting.
    fn prepare_emergency() {
        machine::init(ExitDevice::Semihosting);
    }

    fn init(sys: &System, boot_counter: u64) -> Self {
        machine::init(sys.board.exit);
        logger::init(sys.board.log);
        // Before anything touches the devices the board file names: a wrong address could
        // abort, or program another device.
        let facts = firmware::check_board(&sys.board);
        if let (Uart::Pl011 { base }, false) = (
            sys.board.console,
            matches!(facts, Err(Disagreement::Console { .. })),
        ) {
            Console::init(base.raw());
        }
        if let Err(disagreement) = facts {
            let mut what = heapless::String::<256>::new();
            let _ = write!(
                what,
                "board `{}` disagrees with the firmware's device tree: {disagreement}",
                sys.board.name
            );
            bringup::fatal::<Self>(&what);
        }
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
            bringup::fatal::<Self>("the board describes no GIC");
        }
        if gic::init_cpu().is_err() {
            bringup::fatal::<Self>("no GIC redistributor for the bootstrap CPU");
        }
        let cmdline = firmware::boot_args(&sys.board);
        if !cmdline.is_empty() {
            defmt::info!("boot command line: \"{=str}\"", cmdline);
        }
        tandem_hw::recovery::trigger::plan_from(cmdline);
        Self {
            board: sys.board.clone(),
            cmdline,
        }
    }

    fn image_end() -> u64 {
        boot::image_range().1
    }

    fn load_partition(
        &self,
        partition: &Partition,
        id: u32,
        files: &BootFiles,
    ) -> Result<u64, VirtError> {
        guest_load::load(&self.board, partition, id, files).map_err(VirtError::Load)
    }

    /// The stage-2 root.
    fn prepare_partition(&self, partition: &Partition, _: u32) -> Result<u64, VirtError> {
        Ok(stage2::build(&partition.memory, self.board.gic.as_ref())?)
    }

    fn booted() -> &'static Once<Booted<Self>> {
        &BOOTED
    }

    fn start_cpu(&self, cpu: usize) -> Result<(), VirtError> {
        match firmware::cpu_start(&self.board, cpu) {
            CpuStart::Psci => {
                match psci::cpu_on(cpu as u64, boot::secondary_entry_point(), cpu as u64) {
                    0 => Ok(()),
                    status => Err(VirtError::CpuOn(status)),
                }
            }
            CpuStart::SpinTable { release } => {
                // SAFETY: `release` is the address the firmware's tree names for this core's
                // spin table, in the first GiB the boot map keeps as Device memory (uncached, so
                // the core, spinning with its MMU off, reads the write); the event wakes it from
                // its WFE (Linux Documentation/arch/arm64/booting.rst 5).
                unsafe {
                    core::ptr::write_volatile(release as *mut u64, boot::spin_entry_point());
                    core::arch::asm!("dsb sy", "sev", options(nostack));
                }
                Ok(())
            }
        }
    }

    fn init_secondary(_: usize) -> Result<(), VirtError> {
        gic::init_cpu()?;
        Ok(())
    }

    /// With recovery on, lets the recovery's stop request reach this CPU (`stop`) and starts
    /// its watchdog ticks (`watchdog`), which check nothing until recovery is armed.
    fn enable_cpu(&self, _: usize) -> Result<(), VirtError> {
        if tandem_hw::recovery::journaling() {
            gic::enable_stop()?;
            watchdog::start_ticks()?;
            stop::allow();
        }
        Ok(())
    }

    fn create_vcpu(
        &'static self,
        cpu: usize,
        partition: &'static Partition,
        root: &'static u64,
        id: u32,
        vcpu: u32,
        state: &'static mut VcpuState,
    ) -> Result<El2Vcpu, VirtError> {
        // Each partition has its own VMID, so TLB entries of one never match another's.
        let replicated = partition.ft.is_some();
        let pmu = self.board.gic.and_then(|gic| pmu::granted(partition, &gic));
        if partition.pmu && pmu.is_none() {
            defmt::warn!(
                "partition {=str}: vCPU {=u32} does not get the PMU it asks for: this CPU has no FEAT_PMUv3p1 (ID_AA64DFR0_EL1.PMUVer {=u64}) to prohibit counting at EL2 with, so the PMU stays trapped and hidden",
                partition.name.as_str(),
                vcpu,
                pmu::version()
            );
        }
        // SAFETY: `root` is this partition's stage 2; no guest runs on this CPU yet.
        unsafe {
            vcpu::configure(
                *root,
                (id + 1) as u16,
                u64::from(vcpu),
                replicated,
                pmu.is_some(),
            )
        };
        recovery::vcpu_made(cpu);
        Ok(El2Vcpu::new(
            state,
            id as usize,
            u64::from(vcpu),
            partition.cpus.len() as u64,
            replicated,
            pmu,
            DirtyPages::new(*root, &partition.memory),
        )?)
    }

    fn reset_vcpu(vcpu: &mut El2Vcpu, entry: u64, arg: u64) -> Result<(), VirtError> {
        vcpu.reset(entry, arg);
        Ok(())
    }

    fn snapshot_vcpu(vcpu: &El2Vcpu, into: &mut VcpuState) -> Result<(), VirtError> {
        vcpu.snapshot(into);
        Ok(())
    }

    fn restore_vcpu(vcpu: &mut El2Vcpu, from: &VcpuState) -> Result<(), VirtError> {
        vcpu.restore(from);
        Ok(())
    }

    fn copy_guest_pages(
        &self,
        from: &Partition,
        to: &Partition,
        first: u64,
        count: u64,
    ) -> Result<(), VirtError> {
        guest_memory::copy_pages::<Coherent>(from, to, first, count).map_err(VirtError::Copy)
    }

    fn start_dirty_tracking(vcpu: &mut El2Vcpu) -> Result<u64, VirtError> {
        vcpu.dirty().start().map_err(VirtError::Dirty)
    }

    fn stop_dirty_tracking(vcpu: &mut El2Vcpu) {
        vcpu.dirty().stop()
    }

    fn take_dirty(vcpu: &mut El2Vcpu, out: &mut [u64]) -> usize {
        vcpu.dirty().take(out)
    }

    fn dirty_count(vcpu: &El2Vcpu) -> u64 {
        vcpu.dirty_count()
    }

    fn clock(&self, _: usize) -> VirtClock {
        VirtClock
    }

    fn wait_for_event() {
        // SAFETY: WFE only waits; a CPU posting a start request sends SEV.
        unsafe { core::arch::asm!("wfe", options(nomem, nostack)) };
    }

    fn wake_cpus() {
        // SAFETY: SEV only wakes CPUs waiting in WFE. The DSB first: a CPU woken before the
        // caller's store is visible would find nothing changed and wait again, with no second
        // event to come (Arm ARM D1.16.1, "Wait for Event").
        unsafe { core::arch::asm!("dsb ish", "sev", options(nostack)) };
    }

    fn kick_cpu(cpu: usize) {
        gic::send_kick(cpu);
    }

    fn clear_kick() {
        gic::clear_kick();
    }

    fn exit(success: bool) -> ! {
        machine::exit(success)
    }

    fn park() -> ! {
        machine::park()
    }

    /// The parked CPU never runs a guest again (PSCI CPU_OFF would also do, but parking keeps
    /// the run's end accounting simple).
    fn die() -> ! {
        Self::park()
    }

    fn cmdline(&self) -> &'static str {
        self.cmdline
    }

    const RECOVERS: bool = true;

    fn cpu_index() -> usize {
        sysreg::cpu_index()
    }

    fn clock_base() -> (u64, u64) {
        time::base()
    }

    fn keep_pristine(control: &Control) -> u64 {
        pristine::keep(control).unwrap_or(0)
    }

    fn recovery_now_ns() -> u64 {
        time::independent_ns()
    }

    fn start_watchdog() {
        watchdog::start()
    }

    fn stop_done() {
        stop::stops_over()
    }

    fn stop_cpus(mask: u32) {
        stop::stop_cpus(mask)
    }

    /// YIELD, not WFE: a CPU that never stops sends no event, and masked interrupts do not end
    /// a WFE (Arm ARM D1.16.1), so the owner would miss its deadline; YIELD also lets QEMU's
    /// round robin (-icount) run the stopped CPUs instead of this one until a timer deadline.
    fn relax() {
        // SAFETY: a hint only.
        unsafe { core::arch::asm!("yield", options(nomem, nostack)) };
    }

    fn capture_vcpu(cpu: usize, state: &mut VcpuState) -> bool {
        recovery::capture_vcpu(cpu, state)
    }

    fn on_fresh_stack(cpu: usize, f: extern "C" fn(usize) -> !) -> ! {
        boot::on_fresh_stack(cpu, f)
    }

    fn reset_log() {
        logger::reset_log()
    }

    fn repair_code(control: &Control, reload: bool) -> Result<(), ResetCause> {
        pristine::repair(control, reload)
    }

    fn roll_back(state: &mut VcpuState, pc: u64, gprs: &[u64; MAX_GPRS]) {
        recovery::roll_back(state, pc, gprs)
    }

    fn rebuild_cpu(_: usize) {
        recovery::rebuild_cpu()
    }

    fn resume_vcpu(vcpu: &mut El2Vcpu) -> Result<(), VirtError> {
        vcpu.resume();
        Ok(())
    }

    fn inject_at(cpu: usize, beats: u64) {
        inject::inject_at(cpu, beats)
    }

    fn detected(cause: Detected, detail: u64, pc: u64) {
        // As for a panic (`panic`): this CPU runs the recovery, it is not stopped by it.
        stop::block();
        tandem_hw::recover::recover::<Self>(cause, detail, pc);
        stop::allow();
    }

    fn full_reset() -> ! {
        machine::reset()
    }
}

impl From<OutOfFrames> for VirtError {
    fn from(_: OutOfFrames) -> Self {
        VirtError::OutOfFrames
    }
}

impl From<GicError> for VirtError {
    fn from(e: GicError) -> Self {
        VirtError::Gic(e)
    }
}
