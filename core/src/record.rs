//! The portable part of a vCPU's state that survives a hypervisor microreboot.
//!
//! Recovery hooks in here: a [`VcpuRecord`] is plain `#[repr(C)]` data with no pointers, kept in
//! each CPU's ledger slot (`tandem_hw::ledger`, header in `tandem-recovery`), a region the boot path
//! never clears. Everything a partition's devices and exit loop need to continue lives in it.

use crate::devices::pl011::Pl011;
use crate::devices::uart16550::Uart16550;
use crate::devices::vtimer::VirtualTimer;

/// A vCPU's preserved record: plain data, no pointers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct VcpuRecord {
    /// Exits caused by guest instructions, counted when each one commits (its completion applied),
    /// so an exit rolled back and run again counts once; the ordering part of the execution point.
    pub deterministic_exits: u64,
    /// Interrupts, timer expiries and interrupt windows taken.
    pub asynchronous_exits: u64,
    /// Platform time the partition started at; its clock reads relative to this.
    pub start_ns: u64,
    /// Notices reported about this vCPU (only the first [`crate::runtime::NOTICE_LIMIT`] are shown).
    pub notices: u32,
    /// How many times the partition was restarted at its own request; reported to the guest.
    pub resets: u32,
    /// The partition's port-mapped console (x86 boards).
    pub uart: Uart16550,
    /// The partition's memory-mapped console (aarch64 boards).
    pub pl011: Pl011,
    /// The one-shot timer of the TIMER_SET hypercall.
    pub timer: VirtualTimer,
    /// Console input taken from the machine's line and not yet in the partition's UART.
    pub console_in: ConsoleIn,
}

/// Bytes read from the machine's console line for the partition, until its UART has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct ConsoleIn {
    /// When the line is read next: at most every [`ConsoleIn::POLL_NS`].
    pub next_poll_ns: u64,
    len: u32,
    bytes: [u8; ConsoleIn::CHUNK],
}

impl ConsoleIn {
    /// Bytes taken from the line at a time (and logged as one input by a fault-tolerant copy).
    pub const CHUNK: usize = 8;
    /// How often the line is read: reading a UART's status costs a device access.
    pub const POLL_NS: u64 = 100_000;

    pub const fn new() -> Self {
        Self {
            next_poll_ns: 0,
            len: 0,
            bytes: [0; Self::CHUNK],
        }
    }

    /// The bytes waiting (none if the stored length is corrupt: the record lives in the ledger).
    pub fn pending(&self) -> &[u8] {
        self.bytes.get(..self.len as usize).unwrap_or(&[])
    }

    /// Keeps `bytes` (at most [`ConsoleIn::CHUNK`]) until the UART takes them.
    pub fn hold(&mut self, bytes: &[u8]) {
        let len = bytes.len().min(Self::CHUNK);
        self.bytes[..len].copy_from_slice(&bytes[..len]);
        self.len = len as u32;
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }
}

impl Default for ConsoleIn {
    fn default() -> Self {
        Self::new()
    }
}

impl VcpuRecord {
    /// A fresh record for a vCPU starting now.
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
            console_in: ConsoleIn::new(),
        }
    }
}
