//! A virtual Arm PL011 UART: line-buffered transmit and a receive FIFO, at whatever guest-physical
//! address the machine puts it (see [`crate::platform::Platform::uart_mmio`]).
//!
//! The guest sees a UART whose transmit FIFO is never full; its receive FIFO holds the bytes of
//! the machine's console line routed to the partition. Registers and identification values follow
//! the PL011 Technical Reference Manual (DDI 0183), section 3.2, so that drivers probing the
//! primecell IDs (Linux's amba-pl011) accept it. The receive interrupt is a level the exit loop
//! follows ([`Pl011::interrupt_line`]); the transmit interrupt is never needed, as the transmit
//! FIFO never fills.

use super::line::LineBuffer;
use super::rx::RxFifo;

/// Size of the register window.
pub const SIZE: u64 = 0x1000;

/// The data register: written, a byte to send; read, a received byte.
pub const DR: u64 = 0x000;
const FR: u64 = 0x018;
const IBRD: u64 = 0x024;
const FBRD: u64 = 0x028;
const LCR_H: u64 = 0x02c;
const CR: u64 = 0x030;
const IFLS: u64 = 0x034;
const IMSC: u64 = 0x038;
const RIS: u64 = 0x03c;
const MIS: u64 = 0x040;
const PERIPH_ID: u64 = 0xfe0;

/// FR: transmit FIFO empty, never busy or full (TRM 3.3.3).
const FR_TXFE: u32 = 1 << 7;
/// FR: receive FIFO empty, and full.
const FR_RXFE: u32 = 1 << 4;
const FR_RXFF: u32 = 1 << 6;
/// RIS, MIS: receive interrupt (TRM 3.3.11).
const INT_RX: u32 = 1 << 4;
/// PeriphID0..3 then PCellID0..3 (TRM 3.3.14-3.3.15): part 0x011, designer Arm, revision r1p5.
const IDS: [u32; 8] = [0x11, 0x10, 0x34, 0x00, 0x0d, 0xf0, 0x05, 0xb1];
/// CR after reset: transmit and receive enabled, UART disabled.
const CR_RESET: u32 = 0x300;
const IFLS_RESET: u32 = 0x12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Pl011 {
    ibrd: u32,
    fbrd: u32,
    lcr_h: u32,
    cr: u32,
    ifls: u32,
    imsc: u32,
    out: LineBuffer,
    rx: RxFifo,
}

impl Default for Pl011 {
    fn default() -> Self {
        Self::new()
    }
}

impl Pl011 {
    pub const fn new() -> Self {
        Self {
            ibrd: 0,
            fbrd: 0,
            lcr_h: 0,
            cr: CR_RESET,
            ifls: IFLS_RESET,
            imsc: 0,
            out: LineBuffer::new(),
            rx: RxFifo::new(),
        }
    }

    fn raw_interrupts(&self) -> u32 {
        if self.rx.is_empty() { 0 } else { INT_RX }
    }

    /// The UART's combined interrupt line (UARTINTR, TRM 2.8): high while an unmasked interrupt
    /// is raised, i.e. a received byte waits and the guest unmasked the receive interrupt.
    pub fn interrupt_line(&self) -> bool {
        self.raw_interrupts() & self.imsc != 0
    }

    /// The value a read of the register at `offset` returns; reading DR takes a received byte.
    pub fn read(&mut self, offset: u64) -> u32 {
        match offset {
            DR => self.rx.pop().map_or(0, u32::from),
            FR => {
                let rx = match self.rx.room() {
                    0 => FR_RXFF,
                    _ if self.rx.is_empty() => FR_RXFE,
                    _ => 0,
                };
                FR_TXFE | rx
            }
            IBRD => self.ibrd,
            FBRD => self.fbrd,
            LCR_H => self.lcr_h,
            CR => self.cr,
            IFLS => self.ifls,
            IMSC => self.imsc,
            // The transmit interrupt is not modelled.
            RIS => self.raw_interrupts(),
            MIS => self.raw_interrupts() & self.imsc,
            PERIPH_ID..SIZE => IDS[((offset - PERIPH_ID) / 4) as usize % IDS.len()],
            _ => 0,
        }
    }

    /// Handles a register write. Returns true when a whole line is ready in [`Pl011::line`].
    pub fn write(&mut self, offset: u64, value: u32) -> bool {
        match offset {
            DR => return self.out.push(value as u8),
            IBRD => self.ibrd = value & 0xffff,
            FBRD => self.fbrd = value & 0x3f,
            LCR_H => self.lcr_h = value & 0xff,
            CR => self.cr = value & 0xff87,
            IFLS => self.ifls = value & 0x3f,
            IMSC => self.imsc = value & 0x7ff,
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

    #[test]
    fn collects_lines_from_the_data_register() {
        let mut u = Pl011::new();
        let mut lines = Vec::new();
        for &b in b"ab\r\ncd\n" {
            if u.write(DR, b.into()) {
                lines.push(u.output().line().to_vec());
                u.output().clear();
            }
        }
        assert_eq!(lines, vec![b"ab".to_vec(), b"cd".to_vec()]);
    }

    #[test]
    fn received_bytes_are_read_from_the_data_register() {
        let mut u = Pl011::new();
        assert_eq!(u.read(FR) & FR_RXFE, FR_RXFE);
        assert!(!u.write(IMSC, INT_RX));
        assert_eq!(u.input().push(b"ok"), 2);
        assert_eq!(
            (u.read(FR) & FR_RXFE, u.read(RIS), u.read(MIS)),
            (0, INT_RX, INT_RX)
        );
        assert_eq!((u.read(DR), u.read(DR)), (u32::from(b'o'), u32::from(b'k')));
        assert_eq!((u.read(FR) & FR_RXFE, u.read(MIS)), (FR_RXFE, 0));
        assert_eq!(u.read(DR), 0, "an empty FIFO reads as 0");
    }

    #[test]
    fn is_always_ready_and_identifies_as_a_pl011() {
        let mut u = Pl011::new();
        assert_eq!(u.read(FR) & (1 << 5), 0, "transmit FIFO never full");
        let ids: Vec<u32> = (0..8).map(|i| u.read(PERIPH_ID + 4 * i)).collect();
        assert_eq!(ids, IDS);
    }

    #[test]
    fn control_registers_read_back() {
        let mut u = Pl011::new();
        assert!(!u.write(CR, 0x301));
        assert!(!u.write(LCR_H, 0x70));
        assert_eq!((u.read(CR), u.read(LCR_H)), (0x301, 0x70));
        assert_eq!(u.output().line(), b"");
    }
}
