//! What a physical CPU provides to the portable exit loop besides the vCPU itself.

use crate::config::{GuestUart, MemoryRegion};
use crate::journal::ExitJournal;
use crate::power::PowerStatus;
use crate::replica::{Mark, Outlet};
use crate::report::Notice;

/// Time, idling, guest memory and console output of the machine.
pub trait Platform {
    /// Monotonic time since boot, in nanoseconds.
    fn now_ns(&self) -> u64;
    /// Idles the physical CPU until `deadline_ns` has passed.
    fn wait_until_ns(&self, deadline_ns: u64);
    /// Idles the physical CPU until `deadline_ns` has passed or another CPU kicks this one (a
    /// sibling vCPU stopping the partition), whichever comes first.
    fn idle_until_ns(&self, deadline_ns: u64) {
        self.wait_until_ns(deadline_ns);
    }
    /// Whether another vCPU of the partition this CPU runs has stopped it: this vCPU must stop
    /// too.
    fn partition_stopping(&self) -> bool {
        false
    }
    /// Prints the rest of a line of a partition's console and ends it: prefixed with its name,
    /// unless the line is still open on the console after [`Platform::console_partial`] showed
    /// its first part (then `line` is only what follows that part).
    fn console_line(&self, partition: &str, line: &[u8]);
    /// How many bytes the console has taken so far: a line printed before the call ends at or
    /// before it. Where output leaves as it is printed (tests), positions do not matter.
    fn console_written(&self) -> u64 {
        0
    }
    /// Whether every byte the console took up to `upto` has left the machine, without waiting.
    /// Where output leaves as it is printed (tests), it has.
    fn console_sent(&self, upto: u64) -> bool {
        let _ = upto;
        true
    }
    /// Prints the lines a committed exit left in `journal`'s outbox, as [`Platform::console_line`]
    /// does, recording in `journal.printed` how far it got, so a recovery finishes a batch cut
    /// short without printing any of it twice. Where nothing survives a failure (tests), plain
    /// lines are enough.
    fn console_batch(&self, partition: &str, journal: &mut ExitJournal) {
        for line in journal.outbox.lines() {
            self.console_line(partition, line);
        }
    }
    /// Shows `bytes`, more of an unfinished line of this CPU's partition (not fault-tolerant),
    /// at once and without a newline, if the platform shows partial lines for it (the machine's
    /// console input goes to it); whether it did. When it did not, the bytes come with the rest
    /// of the line.
    fn console_partial(&self, partition: &str, bytes: &[u8]) -> bool {
        let _ = (partition, bytes);
        false
    }
    /// Whether this CPU's partition should look at the machine's console line now: it is where
    /// the line's input goes, has bytes routed to it, or reads the line for the switch keys
    /// ([`crate::console_switch`]). Checked on every exit, before the clock: it must be cheap.
    fn console_input_wanted(&self) -> bool {
        false
    }
    /// The bytes of the machine's console line routed to this CPU's partition that fit in
    /// `buf`, without waiting; how many.
    fn console_input(&self, buf: &mut [u8]) -> usize {
        let _ = buf;
        0
    }
    /// Reports guest misbehaviour that did not stop the partition.
    fn notice(&self, partition: &str, notice: Notice);
    /// Copies `buf.len()` bytes from `region` at `offset`. The core has checked that the range lies
    /// inside the region; implementations may refuse (and fill nothing) if it does not.
    fn read_guest(&self, region: &MemoryRegion, offset: u64, buf: &mut [u8]);
    /// Copies `data` into `region` at `offset`, under the same rule as [`Platform::read_guest`].
    fn write_guest(&self, region: &MemoryRegion, offset: u64, data: &[u8]);
    /// Where this machine puts each partition's memory-mapped UART (a PL011) and the interrupt it
    /// raises, if it gives them one instead of a port-mapped 16550.
    fn uart_mmio(&self) -> Option<GuestUart> {
        None
    }
    /// Starts vCPU `vcpu` of partition `partition` at `entry` with `context` in its first argument
    /// register, on the physical CPU the partition owns for it.
    fn start_vcpu(&self, partition: u32, vcpu: u32, entry: u64, context: u64) -> PowerStatus {
        let _ = (partition, vcpu, entry, context);
        PowerStatus::NotSupported
    }
    /// Makes SGI `intid` pending for vCPU `vcpu` of the partition this CPU runs, and kicks it
    /// (out of its guest or its wait, [`Platform::take_sgis`]).
    fn send_sgi(&self, vcpu: u32, intid: u8) {
        let _ = (vcpu, intid);
    }
    /// The SGIs sent to this CPU's vCPU since the last call (bit n = INTID n).
    fn take_sgis(&self) -> u16 {
        0
    }
    /// Idles until another vCPU of the partition kicks this CPU; `false` at once if none could
    /// (every other one is off, or waits the same way).
    fn wait_for_sibling(&self) -> bool {
        false
    }
    /// Whether vCPU `vcpu` of partition `partition` is running.
    fn vcpu_running(&self, partition: u32, vcpu: u32) -> bool {
        let _ = (partition, vcpu);
        false
    }
}

/// A partition's console on a platform: where its outputs leave the machine.
pub struct ConsoleOutlet<'a, P> {
    pub platform: &'a P,
    pub partition: &'a str,
}

impl<P: Platform> Outlet for ConsoleOutlet<'_, P> {
    fn print(&mut self, line: &[u8]) -> Mark {
        self.platform.console_line(self.partition, line);
        Mark(self.platform.console_written())
    }

    fn sent(&mut self, mark: Mark) -> bool {
        self.platform.console_sent(mark.0)
    }
}
