//! Polled 16550 UART driver for the console (COM1) and the log line (COM2).

use crate::io::{inb, outb};

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

    /// 115200 baud, 8N1, FIFOs on. Bochs honours LCR (5-bit words after reset), so this is required.
    pub fn init(&self) {
        let b = self.base;
        // SAFETY: the port range belongs to this UART (see `new`).
        unsafe {
            outb(b + 1, 0x00);
            outb(b + 3, 0x80);
            outb(b, 0x01);
            outb(b + 1, 0x00);
            outb(b + 3, 0x03);
            outb(b + 2, 0xc7);
            outb(b + 4, 0x03);
        }
    }

    pub fn write_byte(&self, byte: u8) {
        // SAFETY: as in `init`.
        unsafe {
            while inb(self.base + 5) & LSR_THRE == 0 {
                core::hint::spin_loop();
            }
            outb(self.base, byte);
        }
    }

    pub fn write(&self, bytes: &[u8]) {
        for &b in bytes {
            self.write_byte(b);
        }
    }

    /// Waits until every byte has left the transmitter, so a following power-off loses nothing.
    pub fn drain(&self) {
        // SAFETY: as in `init`.
        unsafe {
            while inb(self.base + 5) & LSR_TEMT == 0 {
                core::hint::spin_loop();
            }
        }
    }
}

impl core::fmt::Write for Uart {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.write(s.as_bytes());
        Ok(())
    }
}

impl tandem_hw::console::Sink for Uart {
    fn write_bytes(&mut self, bytes: &[u8]) {
        self.write(bytes);
    }
}
