//! A vCPU of a partition at run time and its exit loop.
//!
//! Where the seams are: FT hooks in at completed exit boundaries of [`VcpuRuntime::run`] (the
//! deterministic-exit count and [`VcpuRuntime::execution_point`] give the point an event is logged
//! at or replayed to); recovery relies on the commit rule kept here — a handler computes, then the
//! completion is applied and the exit counted as one last step.

use crate::config;
use crate::devices::rx::RxFifo;
use crate::exit::ExitKind;
use crate::journal::ExitJournal;
use crate::outcome::Next;
use crate::platform::{ConsoleOutlet, Platform};
use crate::point::ExecPoint;
use crate::record::{ConsoleIn, VcpuRecord};
use crate::replica::{Gate, Replica, Solo};
use crate::report::{Notice, StopReason};
use crate::vcpu::Vcpu;

/// Notices reported per vCPU before further ones are only counted, so a hostile guest cannot
/// flood the log.
pub const NOTICE_LIMIT: u32 = 16;

/// How long a logging copy idles between protocol polls while its guest sleeps.
const IDLE_POLL_NS: u64 = 100_000;

/// How long a copy waiting on its peer (for the log, an acknowledgement, the end of a stall)
/// idles between polls. Idling, not spinning: an emulator that runs all CPUs in one thread (QEMU
/// with `-icount`) only gives the peer its turn when this CPU waits, and on hardware the wait
/// costs the peer's core nothing.
const PEER_POLL_NS: u64 = 10_000;

/// One vCPU of one partition, with everything its exits need.
pub struct VcpuRuntime<'a, P: Platform, R: Replica = Solo> {
    pub partition: &'a config::Partition,
    /// The partition's index as its guest knows it (a backup copy has its primary's).
    pub id: u32,
    pub vcpu: u32,
    pub record: &'a mut VcpuRecord,
    pub platform: &'a P,
    /// Where inputs come from and outputs go (fault tolerance).
    pub replica: &'a mut R,
    /// The execution point of the exit being handled, when the replica logs.
    pub exit_at: ExecPoint,
    /// Where exits are journaled so a hypervisor recovery can roll one back or complete it
    /// ([`crate::journal`]); `None` when recovery is off. A logging replica's exits are not
    /// journaled: its outputs leave under the output rule.
    pub journal: Option<&'a mut ExitJournal>,
}

impl<P: Platform, R: Replica> VcpuRuntime<'_, P, R> {
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

    /// The partition's UART receive FIFO: the PL011 where the machine maps one, else the 16550.
    fn console_rx(&mut self) -> &mut RxFifo {
        if self.platform.uart_mmio().is_some() {
            self.record.pl011.input()
        } else {
            self.record.uart.input()
        }
    }

    /// Moves console input routed to the partition into its UART, while the platform says it may
    /// have some ([`Platform::console_input_wanted`]): a chunk at a time, reading the line at most
    /// every [`ConsoleIn::POLL_NS`]. A
    /// logging copy calls this at deterministic boundary `at` only and logs the bytes there;
    /// bytes it cannot log or the UART cannot take yet wait in the record.
    fn pump_input(&mut self, at: ExecPoint) {
        // The partition's first vCPU only: each vCPU has its own PL011 model, and a guest takes
        // the UART's interrupt on its first CPU unless it moves it, so no byte lands in a UART
        // the guest does not read.
        if self.vcpu != 0 {
            return;
        }
        if self.record.console_in.pending().is_empty() {
            if !self.platform.console_input_wanted() {
                return;
            }
            let now = self.platform.now_ns();
            if now < self.record.console_in.next_poll_ns {
                return;
            }
            self.record.console_in.next_poll_ns = now.saturating_add(ConsoleIn::POLL_NS);
            let room = self.console_rx().room().min(ConsoleIn::CHUNK);
            let mut buf = [0; ConsoleIn::CHUNK];
            let n = self.platform.console_input(&mut buf[..room]);
            if n == 0 {
                return;
            }
            self.record.console_in.hold(&buf[..n]);
        }
        let mut chunk = [0; ConsoleIn::CHUNK];
        let pending = self.record.console_in.pending();
        let n = pending.len();
        chunk[..n].copy_from_slice(pending);
        if self.console_rx().room() >= n && self.replica.input(at, &chunk[..n]).is_ok() {
            self.console_rx().push(&chunk[..n]);
            self.record.console_in.clear();
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

    /// The execution point of the deterministic exit being handled: it counts as taken.
    fn exit_point<V: Vcpu>(&self, vcpu: &V) -> ExecPoint {
        ExecPoint {
            det_exits: self.record.deterministic_exits + 1,
            ..self.execution_point(vcpu)
        }
    }

    /// Runs the vCPU until its partition stops, and says why.
    pub fn run<V: Vcpu>(&mut self, vcpu: &mut V) -> StopReason {
        // Entering the guest for the first time is a deterministic boundary like any completed
        // deterministic exit; a logging replica only acts at those.
        let mut at_boundary = true;
        loop {
            if self.platform.partition_stopping() {
                return self.finish(self.with_partition());
            }
            self.raise_sgis(vcpu);
            if !self.replica.logs() {
                self.raise_due_timer(vcpu);
                self.console_unlogged(vcpu);
            } else if at_boundary && let Err(stop) = self.boundary(vcpu) {
                return stop;
            }
            // A logging copy takes timer interrupts only at deterministic boundaries; its
            // hardware timer only brings the CPU back to keep the protocol alive while the guest
            // runs without exits.
            let deadline = if self.replica.logs() {
                self.replica
                    .poll_period_ns()
                    .map(|period| self.platform.now_ns().saturating_add(period))
            } else {
                self.absolute_deadline()
            };
            vcpu.set_timer_deadline(deadline);
            let exit = match vcpu.run() {
                Ok(exit) => exit,
                Err(e) => return StopReason::EntryFailed(e),
            };
            let pc = vcpu.pc();
            let kind = exit.kind();
            self.begin_exit(vcpu, pc);
            // Only exits that can read time or complete a line log at their own point; the
            // register hash costs more than the rest of a short exit.
            if self.replica.logs() && exit.carries_io() {
                self.exit_at = self.exit_point(vcpu);
            }
            let outcome = self.handle(exit, pc, vcpu.virtual_gic().map(|gic| &*gic));
            // The commit: the guest-visible effects and the count, together and last.
            outcome.commit(vcpu);
            if outcome.next == Next::Retry {
                // Let the replica make room; the guest then makes the same exit again.
                if let Err(stop) = self.service() {
                    return stop;
                }
                at_boundary = false;
                continue;
            }
            match kind {
                ExitKind::Deterministic => self.record.deterministic_exits += 1,
                ExitKind::Asynchronous => self.record.asynchronous_exits += 1,
            }
            self.end_exit();
            at_boundary = kind == ExitKind::Deterministic;
            if !at_boundary
                && self.replica.logs()
                && let Err(stop) = self.service()
            {
                return stop;
            }
            match outcome.next {
                Next::Continue | Next::Retry => {}
                Next::WaitForInterrupt => {
                    if let Err(stop) = self.wait_for_interrupt(vcpu) {
                        return stop;
                    }
                }
                Next::Stop(reason) => {
                    if self.replica.logs() && kind == ExitKind::Deterministic {
                        // The backup must replay up to this exit to stop at it too.
                        self.exit_at = self.exit_point(vcpu);
                        self.exit_at.det_exits -= 1;
                    }
                    return self.finish(reason);
                }
            }
        }
    }

    /// The journal for this exit, when it is kept: recovery is on and the replica does not log.
    pub(crate) fn journal(&mut self) -> Option<&mut ExitJournal> {
        if self.replica.logs() {
            return None;
        }
        self.journal.as_deref_mut()
    }

    /// Checkpoints the record and the registers before the exit at `pc` changes anything.
    // Inlined into each exit loop for the reason given at `Outcome::commit`.
    #[inline(always)]
    fn begin_exit<V: Vcpu>(&mut self, vcpu: &V, pc: u64) {
        let record = &*self.record;
        if let Some(journal) = self.journal.as_deref_mut().filter(|_| !self.replica.logs()) {
            vcpu.save_gprs(&mut journal.gprs);
            journal.begin(pc, record);
        }
    }

    /// The exit is committed and counted: its lines leave, then it is over.
    #[inline(always)]
    fn end_exit(&mut self) {
        let (platform, name) = (self.platform, &self.partition.name);
        if let Some(journal) = self.journal() {
            journal.committed();
            if !journal.outbox.is_empty() {
                platform.console_batch(name, journal);
            }
            journal.idle();
        }
    }

    /// A copy that does not log takes console input whenever it looks, and its UART's
    /// interrupt follows.
    fn console_unlogged<V: Vcpu>(&mut self, vcpu: &mut V) {
        self.pump_input(ExecPoint::default());
        self.follow_uart_line(vcpu);
    }

    /// The PL011's receive interrupt follows its line: pending while a received byte waits
    /// unmasked, withdrawn once the guest read them all. Fault-tolerant copies do not take it
    /// (when it would come is not logged): their guests poll the UART.
    fn follow_uart_line<V: Vcpu>(&mut self, vcpu: &mut V) {
        let Some(intid) = self
            .platform
            .uart_mmio()
            .and_then(|uart| u8::try_from(uart.intid).ok())
        else {
            return;
        };
        if self.record.pl011.interrupt_line() {
            vcpu.raise_interrupt(intid);
        } else {
            vcpu.lower_interrupt(intid);
        }
    }

    /// When an idle vCPU next looks at the console line: a partition that takes console input
    /// (and does not log) is woken by it, every [`ConsoleIn::POLL_NS`].
    fn input_poll_deadline(&self) -> Option<u64> {
        (self.vcpu == 0 && !self.replica.logs() && self.platform.console_input_wanted())
            .then(|| self.platform.now_ns().saturating_add(ConsoleIn::POLL_NS))
    }

    /// Makes the SGIs siblings sent this vCPU pending in its interrupt model.
    fn raise_sgis<V: Vcpu>(&mut self, vcpu: &mut V) {
        let sgis = self.platform.take_sgis();
        (0..16u8)
            .filter(|i| sgis & (1 << i) != 0)
            .for_each(|intid| vcpu.raise_interrupt(intid));
    }

    /// Why this vCPU stops when a sibling stopped the partition.
    fn with_partition(&self) -> StopReason {
        StopReason::WithPartition { vcpu: self.vcpu }
    }

    fn wait_for_peer(&self) {
        self.platform
            .wait_until_ns(self.platform.now_ns().saturating_add(PEER_POLL_NS));
    }

    fn service(&mut self) -> Result<bool, StopReason> {
        let mut out = ConsoleOutlet {
            platform: self.platform,
            partition: &self.partition.name,
        };
        self.replica.service(self.platform.now_ns(), &mut out)
    }

    /// The partition stops: outputs it made must still leave (once the backup has the log up to
    /// them, or the primary runs alone), so none is lost.
    fn finish(&mut self, reason: StopReason) -> StopReason {
        self.replica.guest_stopped(self.exit_at);
        loop {
            match self.service() {
                Ok(true) => self.wait_for_peer(),
                Ok(false) => return reason,
                Err(stop) => return stop,
            }
        }
    }

    /// At a deterministic exit boundary of a logging replica: its protocol work, the interrupts
    /// it delivers (replaying) or the partition's timer (recording). Returns once the guest may
    /// run.
    fn boundary<V: Vcpu>(&mut self, vcpu: &mut V) -> Result<(), StopReason> {
        let at = self.execution_point(vcpu);
        loop {
            let mut out = ConsoleOutlet {
                platform: self.platform,
                partition: &self.partition.name,
            };
            match self.replica.poll(self.platform.now_ns(), at, &mut out) {
                Gate::Run => break,
                Gate::Deliver(vector) => vcpu.raise_interrupt(vector),
                Gate::Input { len, bytes } => {
                    let len = usize::from(len).min(bytes.len());
                    self.console_rx().push(&bytes[..len]);
                }
                Gate::Wait => self.wait_for_peer(),
                Gate::Live { time_ns } => {
                    // Time goes on from the last value the log gave the guest.
                    let now = self.platform.now_ns();
                    self.record.start_ns = now.saturating_sub(time_ns).min(self.record.start_ns);
                    return Ok(());
                }
                Gate::Stop(reason) => return Err(reason),
                Gate::Pause => return Err(StopReason::Paused),
            }
        }
        if self.replica.replays() {
            return Ok(());
        }
        self.pump_input(at);
        let now = self.partition_now();
        if let Some(vector) = self.record.timer.due(now)
            && self.replica.interrupt(at, vector).is_ok()
        {
            self.record.timer.disarm();
            vcpu.raise_interrupt(vector);
        }
        Ok(())
    }

    /// Idles until an interrupt can be delivered, or fails if none ever can.
    fn wait_for_interrupt<V: Vcpu>(&mut self, vcpu: &mut V) -> Result<(), StopReason> {
        let pc = vcpu.pc();
        loop {
            if self.platform.partition_stopping() {
                return Err(self.with_partition());
            }
            self.raise_sgis(vcpu);
            if !self.replica.logs() {
                self.console_unlogged(vcpu);
            }
            if vcpu.interrupt_pending() {
                return Ok(());
            }
            if !vcpu.accepts_interrupts() {
                return Err(StopReason::HaltedForever { pc });
            }
            if self.replica.replays() {
                // The backup idles until the log delivers what woke the primary here.
                self.boundary(vcpu)?;
                if self.replica.replays() {
                    return Ok(());
                }
                continue;
            }
            let core_deadline = match (self.absolute_deadline(), self.input_poll_deadline()) {
                (Some(timer), Some(poll)) => Some(timer.min(poll)),
                (timer, poll) => timer.or(poll),
            };
            match (core_deadline, vcpu.wake_deadline()) {
                // Only a sibling's SGI (or its stop) can end this wait.
                (None, None) if self.platform.wait_for_sibling() => continue,
                (None, None) => return Err(StopReason::HaltedForever { pc }),
                // The guest's own timer comes first: the hardware raises its interrupt once the
                // guest runs again.
                // A kick ends the wait early: a spurious wake-up, which WFI allows (Arm ARM
                // D1.16.2).
                (core_deadline, Some(own)) if core_deadline.is_none_or(|d| own <= d) => {
                    self.platform.idle_until_ns(own);
                    return Ok(());
                }
                (Some(deadline), _) | (None, Some(deadline)) => {
                    if self.replica.logs() {
                        // The primary keeps the protocol going while its guest sleeps.
                        let slice = self.platform.now_ns().saturating_add(IDLE_POLL_NS);
                        self.platform.wait_until_ns(deadline.min(slice));
                        self.boundary(vcpu)?;
                        continue;
                    }
                    self.platform.idle_until_ns(deadline)
                }
            }
            self.raise_due_timer(vcpu);
        }
    }
}
