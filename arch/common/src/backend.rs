//! The contract between the shared bring-up ([`crate::bringup`]) and an architecture backend.
//!
//! Bring-up is the same on every architecture: check the embedded bundle, lay out the hypervisor's
//! memory and the ledger, load and prepare every partition, start the CPUs partitions use, and run
//! one vCPU per CPU until its partition stops. What differs is behind these hooks, statically
//! dispatched (Bao's fixed, same-named arch hooks rather than function pointers, which a
//! microreboot could not preserve).
//!
//! Where later work plugs in: recovery re-enters through [`Backend::init`] and
//! [`Backend::prepare_partition`] (class-A state, rebuilt from the configuration) and finds each
//! CPU's [`Backend::VcpuState`] in the ledger; FT drives the exit loop of the vCPUs made by
//! [`Backend::create_vcpu`].

use heapless::Vec;
use spin::Once;
use tandem_core::config::{MAX_PARTITIONS, Partition, System};
use tandem_core::journal::MAX_GPRS;
use tandem_core::vcpu::Vcpu;
use tandem_recovery::cause::{Detected, ResetCause};

use crate::clock::Clock;
use crate::console::ConsoleUart;
use crate::report::Vocabulary;

/// What every CPU reads once the bootstrap CPU has prepared the partitions (made by
/// `bringup`, kept in the cell [`Backend::booted`] gives).
pub struct Booted<B: Backend> {
    pub(crate) backend: B,
    pub(crate) system: System,
    /// Each partition's class-A state.
    pub(crate) tables: Vec<B::Tables, MAX_PARTITIONS>,
    /// What each partition boots from (in the bundle, or beside the hypervisor's image).
    pub(crate) images: Vec<BootFiles, MAX_PARTITIONS>,
    /// What each partition's first vCPU finds in its first argument register.
    pub(crate) boot_args: Vec<u64, MAX_PARTITIONS>,
    pub(crate) ledger: u64,
}

impl<B: Backend> Booted<B> {
    /// The machine's partitions, as the bundle declared them.
    pub fn system(&self) -> &System {
        &self.system
    }
}

/// What a partition boots from: its image and, for a Linux kernel, its initial RAM disk and
/// command line (checked: in the bundle, or beside it with its CRC).
#[derive(Clone, Copy)]
pub struct BootFiles {
    pub image: &'static [u8],
    pub initrd: Option<&'static [u8]>,
    pub cmdline: &'static str,
}

/// One architecture's half of bring-up.
pub trait Backend: Sized + Sync + 'static {
    /// What the backend needs from boot before the bundle is read (x86: the loader's magic and
    /// boot information; aarch64: nothing).
    type Early;
    /// Why a step failed, logged with the step's name before the machine stops.
    type Error: defmt::Format;
    /// The architecture's part of a CPU's ledger slot: guest registers and interrupt-controller
    /// state that survive a microreboot. Plain `#[repr(C)]` data, valid when all-zero.
    type VcpuState: 'static;
    /// A partition's class-A state: its translation tables and access bitmaps.
    type Tables: Send + Sync;
    /// The architecture's vCPU.
    type Vcpu: Vcpu;
    /// Time and idling on one CPU.
    type Clock: Clock;
    /// The console's UART.
    type Uart: ConsoleUart;
    /// What keeps guest memory coherent around the hypervisor's copies into and out of it.
    type Coherent: crate::guest_memory::Coherence;
    /// How reports name the program counter, halting and exit codes.
    const WORDS: Vocabulary;

    /// Readies the emergency console and the machine's exit for a failure found before the
    /// configuration is read (the board's default UART).
    fn prepare_emergency();
    /// Brings up the machine on the bootstrap CPU: consoles, the hypervisor log, time, interrupt
    /// controllers, virtualization support; logs the banner. Until it returns there may be no
    /// log to report a failure on, so it stops the machine itself when it cannot go on.
    fn init(system: &System, early: Self::Early) -> Self;
    /// Where the hypervisor's loaded image ends: the frame pool starts there.
    fn image_end() -> u64;
    /// Zeroes partition `id`'s memory and loads what it boots from (again, when it asks to be
    /// reset); returns the value its first vCPU finds in its first argument register (aarch64:
    /// the device tree's address).
    fn load_partition(
        &self,
        partition: &Partition,
        id: u32,
        files: &BootFiles,
    ) -> Result<u64, Self::Error>;
    /// Builds partition `id`'s class-A state (translation tables, bitmaps) from its configuration.
    fn prepare_partition(
        &self,
        partition: &Partition,
        id: u32,
    ) -> Result<Self::Tables, Self::Error>;
    /// Where bring-up keeps what every CPU reads (Rust has no generic statics, so each backend
    /// gives one: `static BOOTED: Once<Booted<Self>>`).
    fn booted() -> &'static Once<Booted<Self>>;
    /// Asks CPU `cpu` to start; it enters [`crate::bringup::secondary_main`].
    fn start_cpu(&self, cpu: usize) -> Result<(), Self::Error>;
    /// What a newly started CPU sets up for itself before it runs anything.
    fn init_secondary(cpu: usize) -> Result<(), Self::Error>;
    /// Turns virtualization on for this CPU (x86: VMXON).
    fn enable_cpu(&self, cpu: usize) -> Result<(), Self::Error>;
    /// Makes the vCPU `vcpu` of partition `id` on this CPU, with its state in the ledger.
    fn create_vcpu(
        &'static self,
        cpu: usize,
        partition: &'static Partition,
        tables: &'static Self::Tables,
        id: u32,
        vcpu: u32,
        state: &'static mut Self::VcpuState,
    ) -> Result<Self::Vcpu, Self::Error>;
    /// Puts the vCPU in its architectural reset state, entering at `entry` with `arg` in its first
    /// argument register.
    fn reset_vcpu(vcpu: &mut Self::Vcpu, entry: u64, arg: u64) -> Result<(), Self::Error>;
    /// Copies the state of `vcpu`, paused at an exit boundary, into `into`: what the ledger
    /// slot holds and what lives only in the CPU while the guest runs, so a vCPU of a copy of
    /// the same partition on another CPU can go on from it ([`Backend::restore_vcpu`];
    /// re-protection).
    fn snapshot_vcpu(vcpu: &Self::Vcpu, into: &mut Self::VcpuState) -> Result<(), Self::Error>;
    /// Gives `vcpu`, which has not run yet, the state [`Backend::snapshot_vcpu`] took.
    fn restore_vcpu(vcpu: &mut Self::Vcpu, from: &Self::VcpuState) -> Result<(), Self::Error>;
    /// Copies pages `first..first + count` (numbered across the regions in order) of partition
    /// `from`'s guest memory, its vCPU paused, into that of `to`, a copy of it with the same
    /// guest-physical layout whose vCPU has not run yet.
    fn copy_guest_pages(
        &self,
        from: &Partition,
        to: &Partition,
        first: u64,
        count: u64,
    ) -> Result<(), Self::Error>;
    /// Starts recording which pages of its partition's memory `vcpu`'s guest writes (second-stage
    /// write protection), with none dirty; returns the partition's page count.
    fn start_dirty_tracking(vcpu: &mut Self::Vcpu) -> Result<u64, Self::Error>;
    /// Stops recording writes: the guest's memory is all writable again.
    fn stop_dirty_tracking(vcpu: &mut Self::Vcpu);
    /// Moves up to `out.len()` dirty page numbers into `out`, tracking each anew; returns how
    /// many.
    fn take_dirty(vcpu: &mut Self::Vcpu, out: &mut [u64]) -> usize;
    /// Pages dirty now.
    fn dirty_count(vcpu: &Self::Vcpu) -> u64;
    /// This CPU's clock, set up for idling (once per CPU).
    fn clock(&self, cpu: usize) -> Self::Clock;
    /// Waits a little for another CPU (aarch64: WFE).
    fn wait_for_event();
    /// Wakes CPUs waiting in [`Backend::wait_for_event`] (aarch64: SEV).
    fn wake_cpus();
    /// Sends CPU `cpu` the interrupt that brings it out of its guest and ends its
    /// [`Clock::wait_once_until_ns`] ([`crate::kick`]).
    fn kick_cpu(cpu: usize);
    /// Drops this CPU's pending kick interrupt, if any.
    fn clear_kick();
    /// Stops the machine and reports `success` to whoever runs it (an emulator's exit status).
    fn exit(success: bool) -> !;
    /// Stops this CPU for good; the others carry on.
    fn park() -> !;
    /// Stops this CPU as a failure would: no report, no accounting, never to run again (a
    /// fault-tolerant primary killed on purpose to test failover).
    fn die() -> !;
    /// The hypervisor's boot command line, empty where the board gives none.
    fn cmdline(&self) -> &'static str;

    /// The register window (BAR0, memory) of the first PCI function with one of the given
    /// (vendor, device) IDs, its memory decoding and bus mastering turned on; `None` where
    /// there is none or the machine has no PCI.
    fn pci_bar0(ids: &[(u16, u16)]) -> Option<u64> {
        let _ = ids;
        None
    }

    /// Whether this backend recovers from its own failures (the hooks below); without, a
    /// failure stops the machine.
    const RECOVERS: bool = false;

    /// The calling CPU's index.
    fn cpu_index() -> usize {
        0
    }

    /// The backend's clock for the recovery's timeline and the ledger: (value at boot, Hz).
    fn clock_base() -> (u64, u64) {
        (0, 0)
    }

    /// Cold boot, recovery on: copies the code to a pristine copy and notes it in `control`;
    /// the bytes kept.
    fn keep_pristine(control: &crate::recovery::control::Control) -> u64 {
        let _ = control;
        0
    }

    /// Nanoseconds since boot, usable from any context (no lock, no per-CPU state).
    fn recovery_now_ns() -> u64 {
        0
    }

    /// Recovery is armed (every partition CPU runs): the backend starts what watches for hangs
    /// beyond the heartbeat buddies (x86: the NMI watchdog).
    fn start_watchdog() {}

    /// Every CPU a recovery stopped has arrived: later stop signals are ordinary events again.
    fn stop_done() {}

    /// Stops the CPUs in `mask` for a recovery, even with their interrupts masked (x86: NMI);
    /// each lands in the recovery's follower path.
    fn stop_cpus(mask: u32) {
        let _ = mask;
    }

    /// One turn of the recovery's owner waiting for the stopped CPUs: a busy wait that must not
    /// sleep (it has a deadline, and a CPU that never stops sends no event), only hint that it
    /// spins (aarch64: YIELD, at which QEMU's single-threaded round robin runs the next CPU).
    fn relax() {
        core::hint::spin_loop();
    }

    /// Captures the vCPU this CPU runs into its ledger slot `state`, and leaves virtualization;
    /// false if the CPU had no vCPU state to capture.
    fn capture_vcpu(cpu: usize, state: &mut Self::VcpuState) -> bool {
        let _ = (cpu, state);
        false
    }

    /// Runs `f(cpu)` on CPU `cpu`'s own stack, reset to its top: whatever ran on it is abandoned.
    fn on_fresh_stack(cpu: usize, f: extern "C" fn(usize) -> !) -> ! {
        f(cpu)
    }

    /// Releases the log's lock and starts a fresh frame (a failed CPU may have held it).
    fn reset_log() {}

    /// Puts back the code: the whole image from the pristine copy after checking its hash
    /// (`reload`, microreboot), or only a byte an injection flipped. Err if the copy is corrupt.
    fn repair_code(
        control: &crate::recovery::control::Control,
        reload: bool,
    ) -> Result<(), ResetCause> {
        let _ = (control, reload);
        Ok(())
    }

    /// Rolls the captured vCPU in `state` back to the start of the exit at `pc`, with the
    /// general registers `gprs` held then.
    fn roll_back(state: &mut Self::VcpuState, pc: u64, gprs: &[u64; MAX_GPRS]) {
        let _ = (state, pc, gprs);
    }

    /// Rebuilds this CPU's own class-A state after a recovery (descriptor tables, vectors).
    fn rebuild_cpu(cpu: usize) {
        let _ = cpu;
    }

    /// Gives a freshly made vCPU the state a recovery captured into its own ledger slot.
    fn resume_vcpu(vcpu: &mut Self::Vcpu) -> Result<(), Self::Error> {
        let _ = vcpu;
        Ok(())
    }

    /// Fires the injected fault planned for CPU `cpu` at its `beats`th pass, if that is now.
    fn inject_at(cpu: usize, beats: u64) {
        let _ = (cpu, beats);
    }

    /// A detector in the shared layer (the watchdog, a failed VM entry) saw the hypervisor
    /// fail: the backend starts the recovery (`crate::recover::recover`), which those modules
    /// cannot name without a module cycle; returns if recovery is not armed.
    fn detected(cause: Detected, detail: u64, pc: u64) {
        let _ = (cause, detail, pc);
    }

    /// Resets the whole machine (recovery gave up).
    fn full_reset() -> ! {
        Self::exit(false)
    }
}
