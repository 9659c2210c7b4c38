//! Polled PL011 driver for the machine's console. QEMU's needs no baud-rate set-up; the driver
//! still enables the UART and its transmitter as firmware would (PL011 TRM 3.3.8).

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::registers::{ReadOnly, ReadWrite};
use tock_registers::{register_bitfields, register_structs};

register_bitfields! {u32,
    /// Flag register (PL011 TRM 3.3.3).
    FR [
        TXFF OFFSET(5) NUMBITS(1) [],
        RXFE OFFSET(4) NUMBITS(1) [],
        BUSY OFFSET(3) NUMBITS(1) []
    ],
    /// Control register (PL011 TRM 3.3.8).
    CR [
        RXE OFFSET(9) NUMBITS(1) [],
        TXE OFFSET(8) NUMBITS(1) [],
        UARTEN OFFSET(0) NUMBITS(1) []
    ]
}

register_structs! {
    /// The registers the driver uses (PL011 TRM 3.2).
    Registers {
        (0x000 => dr: ReadWrite<u32>),
        (0x004 => _rsr_reserved),
        (0x018 => fr: ReadOnly<u32, FR::Register>),
        (0x01c => _ilpr_to_lcr),
        (0x030 => cr: ReadWrite<u32, CR::Register>),
        (0x034 => @END),
    }
}

#[derive(Clone, Copy)]
pub struct Pl011 {
    base: u64,
}

impl Pl011 {
    /// The PL011 at physical `base`; the board names it and nothing else drives it.
    pub const fn new(base: u64) -> Self {
        Self { base }
    }

    fn regs(&self) -> &'static Registers {
        // SAFETY: `base` is the UART's register window, mapped as Device memory by the boot map.
        unsafe { &*(self.base as *const Registers) }
    }

    pub fn init(&self) {
        self.regs()
            .cr
            .write(CR::UARTEN::SET + CR::TXE::SET + CR::RXE::SET);
    }

    /// Sends `bytes`, waiting for room in the transmit FIFO.
    pub fn transmit(&self, bytes: &[u8]) {
        let regs = self.regs();
        for &b in bytes {
            while regs.fr.is_set(FR::TXFF) {
                core::hint::spin_loop();
            }
            regs.dr.set(b.into());
        }
    }

    /// Whether a received byte is waiting.
    fn received(&self) -> bool {
        !self.regs().fr.is_set(FR::RXFE)
    }

    /// Waits until every byte has left the transmitter.
    pub fn drain(&self) {
        while self.regs().fr.is_set(FR::BUSY) {
            core::hint::spin_loop();
        }
    }
}

/// QEMU `virt`'s PL011, the console until the configuration names it.
impl tandem_hw::console::ConsoleUart for Pl011 {
    const DEFAULT: u64 = 0x0900_0000;
    /// The PL011's transmit FIFO (32 entries from revision r1p5, 16 before; PL011 TRM) and its
    /// shift register: the larger, so a position is never taken as sent too early.
    const HOLDS: u64 = 33;

    fn at(address: u64) -> Self {
        Self::new(address)
    }

    fn init(&mut self) {
        Pl011::init(self);
    }

    /// FR.BUSY clear: nothing left in the FIFO or being shifted out (PL011 TRM 3.3.3).
    fn idle(&mut self) -> bool {
        !self.regs().fr.is_set(FR::BUSY)
    }

    /// The byte and its count in one step no stop request (a FIQ) splits: QEMU takes
    /// interrupts at the end of a translation block, which an MMIO store ends, so a stop would
    /// otherwise often land right between them.
    fn write_counted(&mut self, byte: u8, count: &mut u32) {
        crate::stop::without_stops(|| {
            let Ok(()) = embedded_io::Write::write_all(self, core::slice::from_ref(&byte));
            *count += 1;
        })
    }
}

impl embedded_io::ErrorType for Pl011 {
    type Error = core::convert::Infallible;
}

/// Blocking: `write` sends the whole buffer, `flush` waits until the transmitter is idle.
impl embedded_io::Write for Pl011 {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.transmit(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        self.drain();
        Ok(())
    }
}

impl embedded_io::ReadReady for Pl011 {
    fn read_ready(&mut self) -> Result<bool, Self::Error> {
        Ok(self.received())
    }
}

/// Blocking until a byte arrives, then whatever the receive FIFO holds that fits; DR's error
/// bits (8-11: framing, parity, break, overrun) are dropped with the byte's status.
impl embedded_io::Read for Pl011 {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        Ok(tandem_hw::console::read_polled(
            buf,
            || self.received(),
            || self.regs().dr.get() as u8,
        ))
    }
}
