//! A virtual 16550 UART at the COM1 ports: line-buffered transmit and a receive FIFO.
//!
//! The guest sees a UART that is always ready to send. Bytes are collected into lines and handed
//! out whole so two partitions' output never interleaves within a line. Received bytes are the
//! machine's console line routed to the partition; partitions have no interrupt controller for
//! the UART's interrupt, so the guest polls LSR.DR (IIR still says when one would be pending).

use super::line::LineBuffer;
use super::rx::RxFifo;

pub const COM1_BASE: u16 = 0x3f8;
pub const COM1_PORTS: u16 = 8;

const LCR_DLAB: u8 = 0x80;
/// Transmitter holding register empty and transmitter empty.
const LSR_IDLE: u8 = 0x60;
/// Data ready: the receive FIFO holds a byte.
const LSR_DR: u8 = 0x01;
/// No interrupt pending; received data available (with IER bit 0).
const IIR_NONE: u8 = 0x01;
const IIR_RX: u8 = 0x04;
const IER_RX: u8 = 0x01;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Uart16550 {
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    dll: u8,
    dlm: u8,
    out: LineBuffer,
    rx: RxFifo,
}

impl Default for Uart16550 {
    fn default() -> Self {
        Self::new()
    }
}

impl Uart16550 {
    pub const fn new() -> Self {
        Self {
            ier: 0,
            lcr: 0,
            mcr: 0,
            scr: 0,
            dll: 0,
            dlm: 0,
            out: LineBuffer::new(),
            rx: RxFifo::new(),
        }
    }

    pub fn handles(port: u16) -> bool {
        (COM1_BASE..COM1_BASE + COM1_PORTS).contains(&port)
    }

    /// Whether a read of `port` is one of the receive buffer (or, with DLAB set, of the
    /// divisor latch at its address).
    pub fn receives(port: u16) -> bool {
        port == COM1_BASE
    }

    /// The value a read of `port` returns; reading the receive buffer takes a received byte.
    pub fn read(&mut self, port: u16) -> u8 {
        let dlab = self.lcr & LCR_DLAB != 0;
        let data = !self.rx.is_empty();
        match port - COM1_BASE {
            0 if dlab => self.dll,
            1 if dlab => self.dlm,
            0 => self.rx.pop().unwrap_or(0),
            1 => self.ier,
            2 if data && self.ier & IER_RX != 0 => IIR_RX,
            2 => IIR_NONE,
            3 => self.lcr,
            4 => self.mcr,
            5 if data => LSR_IDLE | LSR_DR,
            5 => LSR_IDLE,
            6 => 0,
            _ => self.scr,
        }
    }

    /// Handles a register write. Returns true when a whole line is ready in [`Uart16550::line`].
    pub fn write(&mut self, port: u16, value: u8) -> bool {
        let dlab = self.lcr & LCR_DLAB != 0;
        match port - COM1_BASE {
            0 if dlab => self.dll = value,
            1 if dlab => self.dlm = value,
            0 => return self.out.push(value),
            1 => self.ier = value & 0x0f,
            3 => self.lcr = value,
            4 => self.mcr = value & 0x1f,
            7 => self.scr = value,
            _ => {}
        }
        false
    }

    /// The transmitted bytes, collected into lines.
    pub fn output(&mut self) -> &mut LineBuffer {
        &mut self.out
    }

    /// The receive FIFO, which the machine's console line fills.
    pub fn input(&mut self) -> &mut RxFifo {
        &mut self.rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::line::LINE_MAX;

    fn send(u: &mut Uart16550, s: &[u8]) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        for &b in s {
            if u.write(COM1_BASE, b) {
                lines.push(u.output().line().to_vec());
                u.output().clear();
            }
        }
        lines
    }

    #[test]
    fn collects_lines_and_drops_carriage_returns() {
        let mut u = Uart16550::new();
        assert_eq!(
            send(&mut u, b"hello\r\nworld\n"),
            vec![b"hello".to_vec(), b"world".to_vec()]
        );
    }

    #[test]
    fn long_lines_are_split() {
        let mut u = Uart16550::new();
        let lines = send(&mut u, &[b'x'; LINE_MAX + 3]);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len(), LINE_MAX);
        assert_eq!(u.output().line(), b"xxx");
    }

    #[test]
    fn received_bytes_are_read_from_the_receive_buffer() {
        let mut u = Uart16550::new();
        assert_eq!(u.read(COM1_BASE + 5) & LSR_DR, 0);
        u.write(COM1_BASE + 1, IER_RX);
        assert_eq!(u.input().push(b"hi"), 2);
        assert_eq!(u.read(COM1_BASE + 5) & LSR_DR, LSR_DR);
        assert_eq!(u.read(COM1_BASE + 2), IIR_RX);
        assert_eq!((u.read(COM1_BASE), u.read(COM1_BASE)), (b'h', b'i'));
        assert_eq!(u.read(COM1_BASE + 5) & LSR_DR, 0);
        assert_eq!(u.read(COM1_BASE + 2), IIR_NONE);
    }

    #[test]
    fn divisor_latch_does_not_transmit() {
        let mut u = Uart16550::new();
        u.write(COM1_BASE + 3, 0x83);
        assert!(!u.write(COM1_BASE, 1));
        u.write(COM1_BASE + 3, 0x03);
        assert_eq!(u.read(COM1_BASE + 3), 0x03);
        assert_eq!(u.output().line(), b"");
        assert_eq!(u.read(COM1_BASE + 5), LSR_IDLE);
    }
}
