//! A vCPU of a partition at run time: its preserved record and the exit loop.

use crate::config;
use crate::devices::pl011::Pl011;
use crate::devices::uart16550::Uart16550;
use crate::devices::vtimer::VirtualTimer;
use crate::dispatch::Next;
use crate::exit::ExitKind;
use crate::platform::Platform;
use crate::report::{Notice, StopReason};
use crate::vcpu::Vcpu;

/// Notices reported per vCPU before further ones are only counted, so a hostile guest cannot
/// flood the log.
pub const NOTICE_LIMIT: u32 = 16;

/// The portable part of a vCPU's state that survives a hypervisor microreboot: plain data, no
/// pointers, kept in the ledger region that the boot path never clears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct VcpuRecord {
    /// Exits caused by guest instructions; part of the execution point replay relies on.
    pub deterministic_exits: u64,
    pub asynchronous_exits: u64,
    pub start_ns: u64,
    pub notices: u32,
    /// How many times the partition was restarted at its own request; reported to the guest.
    pub resets: u32,
    pub uart: Uart16550,
    pub pl011: Pl011,
    pub timer: VirtualTimer,
}

impl VcpuRecord {
    pub const fn new(start_ns: u64) -> Self {
        Self {
            deterministic_exits: 0,
            asynchronous_exits: 0,
            start_ns,
            notices: 0,
            resets: 0,
            uart: Uart16550::new(),
            pl011: Pl011::new(),
            timer: VirtualTimer::new(),
        }
    }
}

/// One vCPU of one partition, with everything its exits need.
pub struct VcpuRuntime<'a, P: Platform> {
    pub partition: &'a config::Partition,
    /// Index of the partition in the configuration.
    pub id: u32,
    pub vcpu: u32,
    pub record: &'a mut VcpuRecord,
    pub platform: &'a P,
}

impl<P: Platform> VcpuRuntime<'_, P> {
    /// Time as the partition sees it: nanoseconds since it started.
    pub fn partition_now(&self) -> u64 {
        self.platform.now_ns().saturating_sub(self.record.start_ns)
    }

    pub(crate) fn notice(&mut self, notice: Notice) {
        self.record.notices = self.record.notices.saturating_add(1);
        if self.record.notices <= NOTICE_LIMIT {
            self.platform.notice(&self.partition.name, notice);
        }
    }

    fn raise_due_timer<V: Vcpu>(&mut self, vcpu: &mut V) {
        if let Some(vector) = self.record.timer.take_due(self.partition_now()) {
            vcpu.raise_interrupt(vector);
        }
    }

    fn absolute_deadline(&self) -> Option<u64> {
        self.record
            .timer
            .deadline()
            .map(|d| d.saturating_add(self.record.start_ns))
    }

    /// Runs the vCPU until its partition stops, and says why.
    pub fn run<V: Vcpu>(&mut self, vcpu: &mut V) -> StopReason {
        loop {
            self.raise_due_timer(vcpu);
            vcpu.set_timer_deadline(self.absolute_deadline());
            let exit = match vcpu.run() {
                Ok(exit) => exit,
                Err(e) => return StopReason::EntryFailed(e),
            };
            match exit.kind() {
                ExitKind::Deterministic => self.record.deterministic_exits += 1,
                ExitKind::Asynchronous => self.record.asynchronous_exits += 1,
            }
            let pc = vcpu.pc();
            let outcome = self.handle(exit, pc, vcpu.virtual_gic().map(|gic| &*gic));
            outcome.commit(vcpu);
            match outcome.next {
                Next::Continue => {}
                Next::WaitForInterrupt => {
                    if let Err(stop) = self.wait_for_interrupt(vcpu) {
                        return stop;
                    }
                }
                Next::Stop(reason) => return reason,
            }
        }
    }

    /// Idles until an interrupt can be delivered, or fails if none ever can.
    fn wait_for_interrupt<V: Vcpu>(&mut self, vcpu: &mut V) -> Result<(), StopReason> {
        let pc = vcpu.pc();
        loop {
            if vcpu.interrupt_pending() {
                return Ok(());
            }
            if !vcpu.accepts_interrupts() {
                return Err(StopReason::HaltedForever { pc });
            }
            match (self.absolute_deadline(), vcpu.wake_deadline()) {
                (None, None) => return Err(StopReason::HaltedForever { pc }),
                // The guest's own timer comes first: the hardware raises its interrupt once the
                // guest runs again.
                (core_deadline, Some(own)) if core_deadline.is_none_or(|d| own <= d) => {
                    self.platform.wait_until_ns(own);
                    return Ok(());
                }
                (Some(deadline), _) | (None, Some(deadline)) => {
                    self.platform.wait_until_ns(deadline)
                }
            }
            self.raise_due_timer(vcpu);
        }
    }
}
