//! Intel 8254x (e1000) with legacy descriptors, polled: what Bochs and QEMU emulate as the
//! 82540EM (8086:100E). Register offsets and bits from Intel's "PCI/PCI-X Family of Gigabit
//! Ethernet Controllers Software Developer's Manual" (8254x SDM), sections 13 (registers) and 3
//! (descriptors).

use tandem_core::config::{Mac, PAGE_SIZE};

use super::mmio::Mmio;
use super::{MAX_FRAME, Nic, NicError, NicStats, dma};

/// The PCI IDs this driver takes (82540EM desktop, as Bochs and QEMU emulate it; 82545EM).
pub const PCI_IDS: [(u16, u16); 2] = [(0x8086, 0x100e), (0x8086, 0x100f)];

const CTRL: u32 = 0x0000;
const EERD: u32 = 0x0014;
const IMC: u32 = 0x00d8;
const RCTL: u32 = 0x0100;
const TCTL: u32 = 0x0400;
const TIPG: u32 = 0x0410;
const RDBAL: u32 = 0x2800;
const RDBAH: u32 = 0x2804;
const RDLEN: u32 = 0x2808;
const RDH: u32 = 0x2810;
const RDT: u32 = 0x2818;
const TDBAL: u32 = 0x3800;
const TDBAH: u32 = 0x3804;
const TDLEN: u32 = 0x3808;
const TDH: u32 = 0x3810;
const TDT: u32 = 0x3818;
const MTA: u32 = 0x5200;
const RAL0: u32 = 0x5400;
const RAH0: u32 = 0x5404;

const CTRL_ASDE: u32 = 1 << 5;
const CTRL_SLU: u32 = 1 << 6;
const CTRL_RST: u32 = 1 << 26;
const EERD_START: u32 = 1;
const EERD_DONE: u32 = 1 << 4;
/// RAH: the address is valid (8254x SDM 13.5.2).
const RAH_AV: u32 = 1 << 31;
/// Receive on, accept broadcast, strip the CRC; buffer size field 0 = 2048 bytes (13.4.22).
const RCTL_VALUE: u32 = 1 << 1 | 1 << 15 | 1 << 26;
/// Transmit on, pad short packets, collision threshold 0x0f, full-duplex collision distance
/// 0x40 (13.4.33, the SDM's recommended values).
const TCTL_VALUE: u32 = 1 << 1 | 1 << 3 | 0x0f << 4 | 0x40 << 12;
/// Inter-packet gap for copper (13.4.34).
const TIPG_VALUE: u32 = 10 | 8 << 10 | 6 << 20;

/// Descriptor status: the device is done with it.
const DD: u8 = 1;
/// Transmit command: end of packet, insert the FCS, report status (sets DD).
const CMD_EOP_IFCS_RS: u8 = 1 | 1 << 1 | 1 << 3;

const RING: usize = 32;
const DESC: u64 = 16;
const BUFFER: u64 = 2048;
/// Polls of a self-clearing bit before the device is declared unresponsive.
const SPINS: u32 = 1_000_000;

/// Offsets in a legacy descriptor (8254x SDM tables 3-1 and 3-8).
const DESC_LENGTH: u64 = 8;
const RX_STATUS: u64 = 12;
const RX_ERRORS: u64 = 13;
const TX_CMD: u64 = 11;
const TX_STATUS: u64 = 12;

/// One e1000, its rings and buffers in the hypervisor's frames.
pub struct E1000 {
    regs: Mmio,
    mac: Mac,
    rx_ring: u64,
    rx_buffers: u64,
    rx_next: usize,
    tx_ring: u64,
    tx_buffers: u64,
    tx_next: usize,
    stats: NicStats,
}

impl E1000 {
    /// Resets the device whose register window (BAR0) is at `bar0` and brings it up.
    ///
    /// # Safety
    /// `bar0` must be the identity-mapped register window of an 8254x this caller owns, with
    /// memory decoding and bus mastering enabled.
    pub unsafe fn new(bar0: u64) -> Result<Self, NicError> {
        // SAFETY: the caller's contract.
        let regs = unsafe { Mmio::new(bar0) };
        regs.write(IMC, u32::MAX);
        regs.write(CTRL, regs.read(CTRL) | CTRL_RST);
        spin_until(|| regs.read(CTRL) & CTRL_RST == 0).ok_or(NicError::Refused("reset"))?;
        // The reset unmasks nothing, but mask again: the hypervisor takes no device interrupt.
        regs.write(IMC, u32::MAX);
        regs.write(CTRL, regs.read(CTRL) | CTRL_SLU | CTRL_ASDE);
        let mac = read_mac(&regs)?;
        let [a, b, c, d, e, f] = mac.0;
        regs.write(RAL0, u32::from_le_bytes([a, b, c, d]));
        regs.write(RAH0, u32::from(u16::from_le_bytes([e, f])) | RAH_AV);
        for i in 0..128 {
            regs.write(MTA + 4 * i, 0);
        }
        let ring_pages = (RING as u64 * DESC).div_ceil(PAGE_SIZE);
        let buffer_pages = (RING as u64 * BUFFER).div_ceil(PAGE_SIZE);
        let mut nic = Self {
            regs,
            mac,
            rx_ring: dma::alloc(ring_pages)?,
            rx_buffers: dma::alloc(buffer_pages)?,
            rx_next: 0,
            tx_ring: dma::alloc(ring_pages)?,
            tx_buffers: dma::alloc(buffer_pages)?,
            tx_next: 0,
            stats: NicStats::default(),
        };
        nic.start_rx();
        nic.start_tx();
        Ok(nic)
    }

    fn start_rx(&mut self) {
        for i in 0..RING as u64 {
            // SAFETY: descriptor `i` of the receive ring this driver allocated; the device does
            // not own it before RDT moves.
            unsafe { dma::store(self.rx_ring + i * DESC, self.rx_buffers + i * BUFFER) };
        }
        self.regs.write_pair(RDBAL, RDBAH, self.rx_ring);
        self.regs.write(RDLEN, (RING as u64 * DESC) as u32);
        self.regs.write(RDH, 0);
        // Every descriptor but one: head == tail means the ring is empty to the device.
        self.regs.write(RDT, RING as u32 - 1);
        self.regs.write(RCTL, RCTL_VALUE);
    }

    fn start_tx(&mut self) {
        for i in 0..RING as u64 {
            // SAFETY: descriptor `i` of the transmit ring, not yet given to the device: marked
            // done, so `send` finds it free.
            unsafe { dma::store(self.tx_ring + i * DESC + TX_STATUS, DD) };
        }
        self.regs.write_pair(TDBAL, TDBAH, self.tx_ring);
        self.regs.write(TDLEN, (RING as u64 * DESC) as u32);
        self.regs.write(TDH, 0);
        self.regs.write(TDT, 0);
        self.regs.write(TIPG, TIPG_VALUE);
        self.regs.write(TCTL, TCTL_VALUE);
    }
}

/// Polls `done` until it holds, at most [`SPINS`] times.
fn spin_until(mut done: impl FnMut() -> bool) -> Option<()> {
    (0..SPINS).find(|_| done()).map(|_| ())
}

/// The station address from words 0 to 2 of the EEPROM (8254x SDM 5.6.1; Bochs leaves RAL0/RAH0
/// zero after reset, emulators.md 3.7).
fn read_mac(regs: &Mmio) -> Result<Mac, NicError> {
    let mut mac = [0u8; 6];
    for (word, bytes) in mac.chunks_exact_mut(2).enumerate() {
        regs.write(EERD, EERD_START | (word as u32) << 8);
        let mut value = 0;
        spin_until(|| {
            value = regs.read(EERD);
            value & EERD_DONE != 0
        })
        .ok_or(NicError::Refused("EEPROM read"))?;
        bytes.copy_from_slice(&((value >> 16) as u16).to_le_bytes());
    }
    Ok(Mac(mac))
}

impl Nic for E1000 {
    fn mac(&self) -> Mac {
        self.mac
    }

    fn send(&mut self, frame: &[u8]) -> bool {
        let desc = self.tx_ring + self.tx_next as u64 * DESC;
        // SAFETY: a descriptor of this driver's transmit ring; reading its status is how the
        // device says it is done with it.
        let free = unsafe { dma::load::<u8>(desc + TX_STATUS) } & DD != 0;
        if frame.len() > MAX_FRAME {
            return false;
        }
        if !free {
            self.stats.send_full += 1;
            return false;
        }
        let buffer = self.tx_buffers + self.tx_next as u64 * BUFFER;
        // SAFETY: the descriptor is done (DD), so its buffer and fields are the driver's again;
        // the frame fits the 2 KiB buffer (checked above).
        unsafe {
            dma::write(buffer, frame);
            dma::store(desc, buffer);
            dma::store(desc + DESC_LENGTH, frame.len() as u16);
            dma::store(desc + TX_CMD, CMD_EOP_IFCS_RS);
            dma::store(desc + TX_STATUS, 0u8);
        }
        self.tx_next = (self.tx_next + 1) % RING;
        dma::barrier();
        self.regs.write(TDT, self.tx_next as u32);
        self.stats.sent += 1;
        true
    }

    fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        loop {
            let desc = self.rx_ring + self.rx_next as u64 * DESC;
            // SAFETY: a descriptor of this driver's receive ring; DD says the device wrote it.
            let status = unsafe { dma::load::<u8>(desc + RX_STATUS) };
            if status & DD == 0 {
                return None;
            }
            dma::barrier();
            // SAFETY: the device is done with the descriptor (DD) until RDT gives it back.
            let (len, errors) = unsafe {
                (
                    usize::from(dma::load::<u16>(desc + DESC_LENGTH)),
                    dma::load::<u8>(desc + RX_ERRORS),
                )
            };
            let fits = len <= buf.len() && len as u64 <= BUFFER;
            if errors == 0 && fits {
                let buffer = self.rx_buffers + self.rx_next as u64 * BUFFER;
                // SAFETY: `len` bytes of the descriptor's own 2 KiB buffer (checked).
                unsafe { dma::read(buffer, &mut buf[..len]) };
            }
            // SAFETY: as above; clearing the status hands the descriptor back below.
            unsafe { dma::store(desc + RX_STATUS, 0u8) };
            dma::barrier();
            self.regs.write(RDT, self.rx_next as u32);
            self.rx_next = (self.rx_next + 1) % RING;
            if errors == 0 && fits {
                self.stats.received += 1;
                return Some(len);
            }
            self.stats.rx_errors += 1;
        }
    }

    fn stats(&self) -> NicStats {
        self.stats
    }
}
