//! A vCPU of a partition at run time and its exit loop.
//!
//! Where the seams are: FT hooks in at completed exit boundaries of [`VcpuRuntime::run`] (the
//! deterministic-exit count and [`VcpuRuntime::execution_point`] give the point an event is logged
//! at or replayed to); recovery relies on the commit rule kept here — a handler computes, then the
//! completion is applied and the exit counted as one last step.

use crate::config;
use crate::exit::ExitKind;
use crate::outcome::Next;
use crate::platform::Platform;
use crate::point::ExecPoint;
use crate::record::VcpuRecord;
use crate::report::{Notice, StopReason};
use crate::vcpu::Vcpu;

/// Notices reported per vCPU before further ones are only counted, so a hostile guest cannot
/// flood the log.
pub const NOTICE_LIMIT: u32 = 16;

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
        // Reading the clock costs more than the rest of a short exit: only with a timer armed.
        if self.record.timer.deadline().is_none() {
            return;
        }
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

    /// Where the guest is now: committed deterministic exits, PC and register hash. Meaningful at a
    /// completed exit boundary, which is where FT logs and replays events.
    pub fn execution_point<V: Vcpu>(&self, vcpu: &V) -> ExecPoint {
        ExecPoint {
            det_exits: self.record.deterministic_exits,
            pc: vcpu.pc(),
            reg_hash: vcpu.register_hash(),
            precise: None,
        }
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
            let pc = vcpu.pc();
            let outcome = self.handle(exit, pc, vcpu.virtual_gic().map(|gic| &*gic));
            // The commit: the guest-visible effects and the count, together and last.
            outcome.commit(vcpu);
            match exit.kind() {
                ExitKind::Deterministic => self.record.deterministic_exits += 1,
                ExitKind::Asynchronous => self.record.asynchronous_exits += 1,
            }
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
