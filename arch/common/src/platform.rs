//! The portable core's view of one CPU of the machine, the same on every architecture: guest
//! memory, reports and vCPU start requests are the shared hardware layer's; time, idling and the
//! console's UART come from the backend ([`Backend::Clock`], [`Backend::Uart`]).

use core::cell::Cell;
use core::marker::PhantomData;
use core::sync::atomic::AtomicU8;

use tandem_core::config::{GuestUart, MemoryRegion, System};
use tandem_core::journal::ExitJournal;
use tandem_core::platform::Platform;
use tandem_core::power::PowerStatus;
use tandem_core::report::Notice;

use crate::backend::Backend;
use crate::clock::Clock;
use crate::console::Console;
use crate::recovery::watchdog::Watch;
use crate::{console_input, guest_memory, kick, recovery, report, siblings, vcpu_power};

/// The platform of one CPU of a machine run by backend `B`.
pub struct HwPlatform<B: Backend> {
    clock: B::Clock,
    system: &'static System,
    /// Where each partition finds its memory-mapped UART (board data), if the board gives one.
    uart_mmio: Option<GuestUart>,
    /// This CPU, and the index of the partition it runs.
    cpu: usize,
    partition: usize,
    /// The partition's place in the console switch ([`console_input`]), and how often it looks
    /// at the line.
    input_slot: Option<(u8, &'static AtomicU8)>,
    /// Exits since this CPU last looked at the line as the switch's watcher.
    input_skipped: Cell<u8>,
    /// The hang watchdog's and the post-recovery audit's state for this CPU.
    watch: Watch,
    backend: PhantomData<B>,
}

impl<B: Backend> HwPlatform<B> {
    /// The platform of CPU `cpu`, which runs a vCPU of partition `partition` (its index in
    /// `system`).
    pub fn new(
        clock: B::Clock,
        system: &'static System,
        uart_mmio: Option<GuestUart>,
        cpu: usize,
        partition: usize,
    ) -> Self {
        Self {
            clock,
            system,
            uart_mmio,
            cpu,
            partition,
            input_slot: console_input::slot(partition),
            input_skipped: Cell::new(0),
            watch: Watch::default(),
            backend: PhantomData,
        }
    }

    /// Whether this vCPU was resumed by a recovery and has not made progress since.
    pub fn auditing(&self) -> bool {
        self.watch.auditing()
    }

    /// This vCPU was resumed by a recovery: the next passes audit it.
    pub fn audit_resume(&self) {
        self.watch.audit();
    }

    /// The raw hardware counter ([`Clock::counter`]).
    pub fn counter(&self) -> u64 {
        self.clock.counter()
    }
}

impl<B: Backend> Platform for HwPlatform<B> {
    fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }

    fn wait_until_ns(&self, deadline_ns: u64) {
        self.clock.wait_until_ns(deadline_ns);
    }

    fn idle_until_ns(&self, deadline_ns: u64) {
        // The watchdog hears from an idle CPU at least twice a period.
        let deadline_ns = match recovery::watchdog_bound_ns() {
            Some(bound) => deadline_ns.min(self.clock.now_ns().saturating_add(bound)),
            None => deadline_ns,
        };
        kick::idle_until::<B>(&self.clock, self.cpu, deadline_ns);
    }

    /// Checked on every pass through the exit loop: also the watchdog's heartbeat.
    fn partition_stopping(&self) -> bool {
        self.watch.beat::<B>(self.cpu, self.system, self.partition);
        kick::stopping(self.partition)
    }

    fn send_sgi(&self, vcpu: u32, intid: u8) {
        siblings::send_sgi::<B>(self.partition, vcpu, intid, self.cpu);
    }

    fn take_sgis(&self) -> u16 {
        siblings::take_sgis(self.cpu)
    }

    fn wait_for_sibling(&self) -> bool {
        siblings::wait_for_sibling::<B>(&self.clock, self.partition, self.cpu)
    }

    fn console_line(&self, partition: &str, line: &[u8]) {
        Console::<B::Uart>::partition_line(partition, line);
    }

    fn console_written(&self) -> u64 {
        Console::<B::Uart>::written()
    }

    fn console_sent(&self, upto: u64) -> bool {
        Console::<B::Uart>::sent(upto)
    }

    fn console_batch(&self, partition: &str, journal: &mut ExitJournal) {
        Console::<B::Uart>::partition_batch(partition, journal);
    }

    /// Only for the console input target: the partition someone types to, whose prompt and
    /// echo they wait for.
    fn console_partial(&self, partition: &str, bytes: &[u8]) -> bool {
        let target = self
            .input_slot
            .is_some_and(|(slot, _)| console_input::is_target(slot));
        if target {
            Console::<B::Uart>::partition_part(partition, bytes);
        }
        target
    }

    #[inline]
    fn console_input_wanted(&self) -> bool {
        self.input_slot
            .is_some_and(|(_, look)| console_input::wanted(look, &self.input_skipped))
    }

    fn console_input(&self, buf: &mut [u8]) -> usize {
        self.input_slot.map_or(0, |(slot, _)| {
            console_input::input::<B::Uart>(self.system, slot, self.now_ns(), buf)
        })
    }

    fn notice(&self, partition: &str, notice: Notice) {
        report::notice(partition, notice);
    }

    fn read_guest(&self, region: &MemoryRegion, offset: u64, buf: &mut [u8]) {
        guest_memory::read(region, offset, buf);
    }

    fn write_guest(&self, region: &MemoryRegion, offset: u64, data: &[u8]) {
        guest_memory::write(region, offset, data);
    }

    fn uart_mmio(&self) -> Option<GuestUart> {
        self.uart_mmio
    }

    fn start_vcpu(&self, partition: u32, vcpu: u32, entry: u64, context: u64) -> PowerStatus {
        let status = vcpu_power::start_vcpu(partition, vcpu, entry, context);
        if status == PowerStatus::Success {
            B::wake_cpus();
        }
        status
    }

    fn vcpu_running(&self, partition: u32, vcpu: u32) -> bool {
        vcpu_power::vcpu_running(partition, vcpu)
    }
}
