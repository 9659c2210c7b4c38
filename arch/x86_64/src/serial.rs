//! Polled 16550 UART driver for the console (COM1) and the log line (COM2).

use core::convert::Infallible;

use x86_64::instructions::port::{PortReadOnly, PortWriteOnly};

/// Register offsets from the UART's base port (PC16550D data sheet, table 2).
const THR: u16 = 0;
/// Divisor latch low byte while LCR.DLAB is set (shares the THR port).
const DLL: u16 = 0;
const IER: u16 = 1;
/// Divisor latch high byte while LCR.DLAB is set (shares the IER port).
const DLM: u16 = 1;
const FCR: u16 = 2;
const LCR: u16 = 3;
const MCR: u16 = 4;
const LSR: u16 = 5;

const LCR_DLAB: u8 = 1 << 7;
/// 8 data bits, no parity, 1 stop bit.
const LCR_8N1: u8 = 0b11;
/// FIFOs on, both cleared, receive trigger at 14 bytes.
const FCR_ENABLE_CLEAR_14: u8 = 0xc7;
/// DTR and RTS asserted.
const MCR_DTR_RTS: u8 = 0b11;
/// 115200 baud from the 1.8432 MHz clock.
const DIVISOR_115200: u8 = 1;
const RBR: u16 = 0;
const LSR_DR: u8 = 1 << 0;
const LSR_THRE: u8 = 1 << 5;
const LSR_TEMT: u8 = 1 << 6;

#[derive(Clone, Copy)]
pub struct Uart {
    base: u16,
}

impl Uart {
    /// A UART at `base`; the board configuration names it and nothing else drives it.
    pub const fn new(base: u16) -> Self {
        Self { base }
    }

    fn set(&self, offset: u16, value: u8) {
        // SAFETY: the port range belongs to this UART (see `new`).
        unsafe { PortWriteOnly::new(self.base + offset).write(value) }
    }

    fn line_status(&self) -> u8 {
        // SAFETY: as in `set`; reading LSR has no side effect on transmission.
        unsafe { PortReadOnly::new(self.base + LSR).read() }
    }

    /// 115200 baud, 8N1, FIFOs on. Bochs honours LCR (5-bit words after reset), so this is required.
    pub fn init(&self) {
        self.set(IER, 0);
        self.set(LCR, LCR_DLAB);
        self.set(DLL, DIVISOR_115200);
        self.set(DLM, 0);
        self.set(LCR, LCR_8N1);
        self.set(FCR, FCR_ENABLE_CLEAR_14);
        self.set(MCR, MCR_DTR_RTS);
    }

    pub fn write_byte(&self, byte: u8) {
        while self.line_status() & LSR_THRE == 0 {
            core::hint::spin_loop();
        }
        self.set(THR, byte);
    }

    pub fn send(&self, bytes: &[u8]) {
        for &b in bytes {
            self.write_byte(b);
        }
    }

    /// Whether a received byte is waiting.
    fn received(&self) -> bool {
        self.line_status() & LSR_DR != 0
    }

    fn receive(&self) -> u8 {
        // SAFETY: reading the receive buffer of the console UART, which only the hypervisor
        // drives, takes the byte it holds.
        unsafe { PortReadOnly::new(self.base + RBR).read() }
    }

    /// Waits until every byte has left the transmitter, so a following power-off loses nothing.
    pub fn drain(&self) {
        while self.line_status() & LSR_TEMT == 0 {
            core::hint::spin_loop();
        }
    }
}

/// COM1, the console until the board names its own.
impl tandem_hw::console::ConsoleUart for Uart {
    const DEFAULT: u64 = 0x3f8;
    /// The 16550's 16-byte transmit FIFO and its shift register (PC16550D data sheet, FIFO mode).
    const HOLDS: u64 = 17;

    /// `address` is an I/O port (the configuration's 16-bit `port`).
    fn at(address: u64) -> Self {
        Self::new(address as u16)
    }

    fn init(&mut self) {
        Uart::init(self);
    }

    /// LSR.TEMT: the FIFO and the shift register are both empty.
    fn idle(&mut self) -> bool {
        self.line_status() & LSR_TEMT != 0
    }

    /// The byte's `out` and the count's `inc` are adjacent instructions (`counted_out`): an
    /// NMI cannot be held off, so a recovery that stops this CPU between them completes the
    /// count instead (`recovery::nmi_check`, which finds the count's address in RCX).
    fn write_counted(&mut self, byte: u8, count: &mut u32) {
        while self.line_status() & LSR_THRE == 0 {
            core::hint::spin_loop();
        }
        // SAFETY: writes the transmit register of the console UART, which only the hypervisor
        // drives, and increments `count`, which the caller lends for the call.
        unsafe { counted_out(u64::from(self.base + THR), u64::from(byte), count) }
    }
}

unsafe extern "C" {
    /// Writes `byte` to I/O port `port`, then increments `*count`.
    fn counted_out(port: u64, byte: u64, count: *mut u32);
}

// Assembly rather than inline `asm!`, which cannot export the label between the two
// instructions that the NMI handler looks for.
core::arch::global_asm!(
    r#"
    .text
    .global counted_out, counted_byte_written
counted_out:
    mov rcx, rdx
    mov edx, edi
    mov eax, esi
    out dx, al
counted_byte_written:
    inc dword ptr [rcx]
    ret
"#
);

/// A polled UART cannot fail: it waits for room instead.
impl embedded_io::ErrorType for Uart {
    type Error = Infallible;
}

impl embedded_io::Write for Uart {
    /// Blocks until every byte of `buf` is in the transmitter.
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        self.send(buf);
        Ok(buf.len())
    }

    /// Blocks until the last byte has left the transmitter.
    fn flush(&mut self) -> Result<(), Infallible> {
        self.drain();
        Ok(())
    }
}

impl embedded_io::ReadReady for Uart {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(self.received())
    }
}

/// Blocking until a byte arrives, then whatever the receive FIFO holds that fits.
impl embedded_io::Read for Uart {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        Ok(tandem_hw::console::read_polled(
            buf,
            || self.received(),
            || self.receive(),
        ))
    }
}
