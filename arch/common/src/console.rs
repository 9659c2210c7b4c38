//! The physical console: partitions' lines, prefixed (whole, or shown in parts while the
//! console input target waits: [`tandem_core::console_out`]), plus an emergency path for
//! failures of the hypervisor itself. The UART is any `embedded_io::Write` driver the backend
//! names ([`ConsoleUart`]); where it is comes from the board.

use core::convert::Infallible;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicU64, Ordering};

use embedded_io::{Read, ReadReady, Write};
use spin::mutex::TicketMutex;
use tandem_core::console_out::ConsoleOut;
use tandem_core::journal::ExitJournal;

/// A UART the console can drive: it prints partitions' lines and takes the console line's input.
pub trait ConsoleUart:
    Write<Error = Infallible> + Read<Error = Infallible> + ReadReady<Error = Infallible>
{
    /// Where the console is until the configuration names it (x86: an I/O port; aarch64: an MMIO
    /// base). A link-time fact, so that a refused configuration can still be reported.
    const DEFAULT: u64;
    /// How many bytes the transmitter holds at most (FIFO and shift register): once that many
    /// more have been written after a byte, the byte has left the line.
    const HOLDS: u64;
    /// The UART at `address`.
    fn at(address: u64) -> Self;
    /// Programs the line (baud rate, framing) and enables the transmitter.
    fn init(&mut self);
    /// Whether everything written has left the transmitter, without waiting.
    fn idle(&mut self) -> bool;
    /// Writes `byte` and counts it in `count` (a console journal's progress, in the ledger): a
    /// recovery's stop request landing between the two would print the byte twice, so a
    /// backend that can hold its stop requests off for a moment does (aarch64: the FIQ).
    fn write_counted(&mut self, byte: u8, count: &mut u32) {
        let Ok(()) = self.write_all(core::slice::from_ref(&byte));
        *count += 1;
    }
}

/// `embedded_io::Read` for a polled UART: waits until `received` says a byte is there, then
/// `take`s what the receive FIFO holds that fits in `buf`; how many.
pub fn read_polled(
    buf: &mut [u8],
    mut received: impl FnMut() -> bool,
    mut take: impl FnMut() -> u8,
) -> usize {
    if buf.is_empty() {
        return 0;
    }
    while !received() {
        core::hint::spin_loop();
    }
    let mut n = 0;
    while n < buf.len() && received() {
        buf[n] = take();
        n += 1;
    }
    n
}

/// Where the console is; 0 until [`Console::init`].
static ADDRESS: AtomicU64 = AtomicU64::new(0);
/// How many bytes the console lock's holders have written to the UART since boot: positions in
/// the console's output, which tell when a line has left ([`Console::sent`]).
static WRITTEN: AtomicU64 = AtomicU64::new(0);
/// Taken for each line or part of one, with which partition's line is open on the console
/// (scratch: a microreboot starts with none open). A ticket lock serves CPUs in the order they
/// asked, so a partition printing as fast as it can delays another's line by at most the one line
/// it is printing: a partition's console costs others at most one line (prefix and at most
/// `LINE_MAX` escaped bytes, and a newline closing an open line) per line they print, however
/// much it prints.
static LOCK: TicketMutex<ConsoleOut> = TicketMutex::new(ConsoleOut::new());

/// The console on UART type `U` (one per machine).
pub struct Console<U>(PhantomData<U>);

impl<U: ConsoleUart> Console<U> {
    fn uart() -> U {
        match ADDRESS.load(Ordering::Relaxed) {
            0 => U::at(U::DEFAULT),
            address => U::at(address),
        }
    }

    /// Makes the UART at `address` the console and sets it up.
    pub fn init(address: u64) {
        ADDRESS.store(address, Ordering::Relaxed);
        Self::uart().init();
    }

    /// Prints `[partition] line` and a newline, with the guest's control characters escaped;
    /// lines from different CPUs never interleave. If the partition's line is open
    /// ([`Self::partition_part`]), `line` is its rest and follows without the prefix.
    pub fn partition_line(partition: &str, line: &[u8]) {
        Self::partition_print(partition, line, true);
    }

    /// Shows `part` of an unfinished line of `partition`, escaped, without a newline: the line
    /// stays open for the partition until its rest, or another line, comes.
    pub fn partition_part(partition: &str, part: &[u8]) {
        Self::partition_print(partition, part, false);
    }

    fn partition_print(partition: &str, bytes: &[u8], ends: bool) {
        let mut open = LOCK.lock();
        let mut uart = Self::uart();
        // The UART cannot fail (its error type is Infallible): it waits for room instead.
        open.partition(partition, bytes, ends, |piece| {
            let Ok(()) = uart.write_all(piece);
            Self::count(piece.len());
        });
    }

    fn count(bytes: usize) {
        WRITTEN.fetch_add(bytes as u64, Ordering::Release);
    }

    /// How many bytes the console has taken: every line printed before the call ends at or
    /// before this position.
    pub fn written() -> u64 {
        WRITTEN.load(Ordering::Acquire)
    }

    /// Whether every byte up to position `upto` has left the UART, without waiting: the UART
    /// has taken enough bytes since to have pushed it out, or, with nobody printing, its
    /// transmitter is empty. Other CPUs printing without pause never keep it from being sent.
    pub fn sent(upto: u64) -> bool {
        if Self::written() >= upto.saturating_add(U::HOLDS) {
            return true;
        }
        // Holding the lock, nobody writes: an empty transmitter has sent every position.
        LOCK.try_lock().is_some_and(|_open| Self::uart().idle())
    }

    /// Prints the lines a committed exit left in `journal`'s outbox, byte by byte recording how
    /// far it got in `journal.printed` (in the ledger): a recovery calls it again for a batch cut
    /// short, which then goes on from the next byte, as the console had it open then, so no line
    /// is lost, repeated or torn.
    pub fn partition_batch(partition: &str, journal: &mut ExitJournal) {
        let mut open = LOCK.lock();
        let mut uart = Self::uart();
        let ExitJournal {
            outbox, printed, ..
        } = journal;
        printed.start(outbox.seq);
        for line in outbox.lines().skip(printed.lines as usize) {
            if printed.bytes == 0 {
                printed.before = *open;
            } else {
                *open = printed.before;
            }
            let skip = printed.bytes as usize;
            let mut at = 0;
            open.partition(partition, line, true, |piece| {
                for &byte in piece {
                    if at >= skip {
                        uart.write_counted(byte, &mut printed.bytes);
                        Self::count(1);
                    }
                    at += 1;
                }
            });
            printed.lines += 1;
            printed.bytes = 0;
        }
    }

    /// For a recovery, with every other CPU stopped: whoever held the console lock is gone.
    pub fn reset_lock() {
        while LOCK.is_locked() {
            // SAFETY: every other CPU is stopped for the recovery and never returns to the code
            // that took a ticket, so each outstanding ticket is served and dropped here.
            unsafe { LOCK.force_unlock() };
        }
    }

    /// Writes a hypervisor failure report without taking the console lock, which the failing CPU
    /// may hold. Lines may interleave with another CPU's, but they get out.
    pub fn emergency(report: core::fmt::Arguments<'_>) {
        let mut uart = Self::uart();
        let Ok(()) = uart.write_all(b"[tandem] FATAL: ");
        // A formatting error leaves nothing to report it to; the line still ends.
        let _ = uart.write_fmt(report);
        let Ok(()) = uart.write_all(b"\n");
    }

    /// The next byte received on the console line, if one is there (without waiting).
    pub fn read_byte() -> Option<u8> {
        let mut uart = Self::uart();
        if uart.read_ready() != Ok(true) {
            return None;
        }
        let mut byte = [0];
        let Ok(n) = uart.read(&mut byte);
        (n == 1).then_some(byte[0])
    }

    /// Prints `[tandem] line`: the hypervisor speaking on the console (the console switch,
    /// [`crate::console_input`]), whole, like a partition's line.
    pub fn hypervisor_line(line: core::fmt::Arguments<'_>) {
        let mut open = LOCK.lock();
        let mut uart = Self::uart();
        let mut uart = Counted(&mut uart);
        open.hypervisor(|piece| {
            let Ok(()) = uart.write_all(piece);
        });
        let Ok(()) = uart.write_all(b"[tandem] ");
        // A formatting error leaves nothing to report it to; the line still ends.
        let _ = uart.write_fmt(line);
        let Ok(()) = uart.write_all(b"\n");
    }

    /// Ends a partition's open line, unless another CPU holds the console (a failing one may),
    /// then waits until everything printed has left the UART.
    pub fn drain() {
        if let Some(mut open) = LOCK.try_lock() {
            open.close(&mut |piece| {
                let Ok(()) = Self::uart().write_all(piece);
            });
        }
        let Ok(()) = Self::uart().flush();
    }
}

/// A console UART whose writes count in [`WRITTEN`].
struct Counted<'a, U>(&'a mut U);

impl<U: ConsoleUart> embedded_io::ErrorType for Counted<'_, U> {
    type Error = Infallible;
}

impl<U: ConsoleUart> Write for Counted<'_, U> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        let n = self.0.write(buf)?;
        Console::<U>::count(n);
        Ok(n)
    }

    fn flush(&mut self) -> Result<(), Infallible> {
        self.0.flush()
    }
}
