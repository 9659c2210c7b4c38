//! Polled PL011 driver for the machine's console. QEMU's needs no baud-rate set-up; the driver
//! still enables the UART and its transmitter as firmware would (PL011 TRM 3.3.8).

const DR: u64 = 0x000;
const FR: u64 = 0x018;
const CR: u64 = 0x030;
const FR_TXFF: u32 = 1 << 5;
const FR_BUSY: u32 = 1 << 3;
/// UARTEN | TXE | RXE.
const CR_ENABLE: u32 = 1 | 1 << 8 | 1 << 9;

#[derive(Clone, Copy)]
pub struct Pl011 {
    base: u64,
}

impl Pl011 {
    /// The PL011 at physical `base`; the board names it and nothing else drives it.
    pub const fn new(base: u64) -> Self {
        Self { base }
    }

    fn read(&self, offset: u64) -> u32 {
        // SAFETY: `base` is the UART's register window, mapped as Device memory by the boot map.
        unsafe { core::ptr::read_volatile((self.base + offset) as *const u32) }
    }

    fn write_reg(&self, offset: u64, value: u32) {
        // SAFETY: as in `read`.
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u32, value) }
    }

    pub fn init(&self) {
        self.write_reg(CR, CR_ENABLE);
    }

    pub fn write(&self, bytes: &[u8]) {
        for &b in bytes {
            while self.read(FR) & FR_TXFF != 0 {
                core::hint::spin_loop();
            }
            self.write_reg(DR, b.into());
        }
    }

    /// Waits until every byte has left the transmitter.
    pub fn drain(&self) {
        while self.read(FR) & FR_BUSY != 0 {
            core::hint::spin_loop();
        }
    }
}

impl core::fmt::Write for Pl011 {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.write(s.as_bytes());
        Ok(())
    }
}

impl tandem_hw::console::Sink for Pl011 {
    fn write_bytes(&mut self, bytes: &[u8]) {
        self.write(bytes);
    }
}
