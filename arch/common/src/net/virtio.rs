//! virtio-net over the virtio-mmio transport (version 2, "modern"), polled: what QEMU `virt`
//! offers with `-device virtio-net-device` and `virtio-mmio.force-legacy=false`. Register
//! offsets, status bits and ring layouts from the virtio 1.1 specification, sections 4.2.2
//! (MMIO registers), 3.1.1 (driver initialisation), 2.6 (split virtqueues) and 5.1 (network
//! device).

use tandem_core::config::{Mac, PAGE_SIZE};

use super::mmio::Mmio;
use super::{MAX_FRAME, Nic, NicError, NicStats, dma};

const MAGIC: u32 = 0x000;
const VERSION: u32 = 0x004;
const DEVICE_ID: u32 = 0x008;
const DEVICE_FEATURES: u32 = 0x010;
const DEVICE_FEATURES_SEL: u32 = 0x014;
const DRIVER_FEATURES: u32 = 0x020;
const DRIVER_FEATURES_SEL: u32 = 0x024;
const QUEUE_SEL: u32 = 0x030;
const QUEUE_NUM_MAX: u32 = 0x034;
const QUEUE_NUM: u32 = 0x038;
const QUEUE_READY: u32 = 0x044;
const QUEUE_NOTIFY: u32 = 0x050;
const STATUS: u32 = 0x070;
const QUEUE_DESC: (u32, u32) = (0x080, 0x084);
const QUEUE_DRIVER: (u32, u32) = (0x090, 0x094);
const QUEUE_DEVICE: (u32, u32) = (0x0a0, 0x0a4);
const CONFIG: u32 = 0x100;

/// "virt" in little-endian.
const MAGIC_VALUE: u32 = 0x7472_6976;
const NET_DEVICE: u32 = 1;

const ACKNOWLEDGE: u32 = 1;
const DRIVER: u32 = 2;
const DRIVER_OK: u32 = 4;
const FEATURES_OK: u32 = 8;

/// VIRTIO_NET_F_MAC (5.1.3): the device's config space holds its address.
const F_MAC: u64 = 1 << 5;
/// VIRTIO_F_VERSION_1 (6): a modern device; required by the version-2 transport.
const F_VERSION_1: u64 = 1 << 32;

/// `struct virtio_net_hdr` with VERSION_1 (5.1.6): 12 bytes before every frame, all zero on
/// transmit (no checksum offload, no segmentation).
const NET_HDR: usize = 12;

const RX_QUEUE: u32 = 0;
const TX_QUEUE: u32 = 1;
const QUEUE_SIZE: u16 = 32;
const BUFFER: u64 = 2048;

/// Descriptor flag: the device writes the buffer (2.6.5).
const DESC_F_WRITE: u16 = 2;

/// One split virtqueue: descriptor table, available (driver) ring and used (device) ring, each
/// in a page of its own, and a buffer per descriptor.
struct Queue {
    desc: u64,
    avail: u64,
    used: u64,
    buffers: u64,
    /// Next index the driver puts in the available ring.
    avail_idx: u16,
    /// Next index of the used ring the driver has not consumed.
    used_idx: u16,
}

impl Queue {
    fn new(regs: &Mmio, index: u32) -> Result<Self, NicError> {
        regs.write(QUEUE_SEL, index);
        if regs.read(QUEUE_READY) != 0 {
            return Err(NicError::Refused("queue already in use"));
        }
        if regs.read(QUEUE_NUM_MAX) < u32::from(QUEUE_SIZE) {
            return Err(NicError::Refused("queue too small"));
        }
        let pages = (u64::from(QUEUE_SIZE) * BUFFER).div_ceil(PAGE_SIZE);
        let queue = Self {
            desc: dma::alloc(1)?,
            avail: dma::alloc(1)?,
            used: dma::alloc(1)?,
            buffers: dma::alloc(pages)?,
            avail_idx: 0,
            used_idx: 0,
        };
        regs.write(QUEUE_NUM, u32::from(QUEUE_SIZE));
        regs.write_pair(QUEUE_DESC.0, QUEUE_DESC.1, queue.desc);
        regs.write_pair(QUEUE_DRIVER.0, QUEUE_DRIVER.1, queue.avail);
        regs.write_pair(QUEUE_DEVICE.0, QUEUE_DEVICE.1, queue.used);
        regs.write(QUEUE_READY, 1);
        Ok(queue)
    }

    fn buffer(&self, id: u16) -> u64 {
        self.buffers + u64::from(id) * BUFFER
    }

    /// Describes buffer `id` (`len` bytes, device-writable if `write`) in descriptor `id` and
    /// makes it available.
    fn offer(&mut self, id: u16, len: u32, write: bool) {
        let desc = self.desc + u64::from(id) * 16;
        let slot = self.avail + 4 + u64::from(self.avail_idx % QUEUE_SIZE) * 2;
        // SAFETY: descriptor `id` and an available-ring slot of this queue's own pages; the
        // device does not own the descriptor until the index below moves past it.
        unsafe {
            dma::store(desc, self.buffer(id));
            dma::store(desc + 8, len);
            dma::store(desc + 12, if write { DESC_F_WRITE } else { 0 });
            dma::store(desc + 14, 0u16);
            dma::store(slot, id);
        }
        self.avail_idx = self.avail_idx.wrapping_add(1);
        dma::barrier();
        // SAFETY: the available ring's `idx` field, this queue's page.
        unsafe { dma::store(self.avail + 2, self.avail_idx) };
        dma::barrier();
    }

    /// The next used element (descriptor id, bytes written), if the device returned one.
    fn take_used(&mut self) -> Option<(u16, u32)> {
        // SAFETY: the used ring's `idx` field, this queue's page, written by the device.
        let device_idx = unsafe { dma::load::<u16>(self.used + 2) };
        if device_idx == self.used_idx {
            return None;
        }
        dma::barrier();
        let elem = self.used + 4 + u64::from(self.used_idx % QUEUE_SIZE) * 8;
        // SAFETY: an element of the used ring the device has published (idx moved past it).
        let (id, len) = unsafe { (dma::load::<u32>(elem), dma::load::<u32>(elem + 4)) };
        self.used_idx = self.used_idx.wrapping_add(1);
        // A device naming a descriptor that does not exist is ignored rather than trusted.
        u16::try_from(id)
            .ok()
            .filter(|&id| id < QUEUE_SIZE)
            .map(|id| (id, len))
    }
}

/// One virtio-net device and its two queues.
pub struct VirtioNet {
    regs: Mmio,
    mac: Mac,
    rx: Queue,
    tx: Queue,
    /// Transmit descriptors the device has not returned yet.
    tx_in_flight: u16,
    /// Free transmit descriptors, a stack of ids.
    tx_free: heapless::Vec<u16, { QUEUE_SIZE as usize }>,
    stats: NicStats,
}

impl VirtioNet {
    /// Looks for a network device behind `slots` transports from `base`, `stride` apart, and
    /// brings the first found up.
    ///
    /// # Safety
    /// Each `base + i * stride` must be the identity-mapped register window of a virtio-mmio
    /// transport (or nothing that reading its first words disturbs), owned by the caller.
    pub unsafe fn probe(base: u64, slots: u8, stride: u32) -> Result<Self, NicError> {
        for slot in 0..u64::from(slots) {
            // SAFETY: the caller's contract, for transport `slot`.
            let regs = unsafe { Mmio::new(base + slot * u64::from(stride)) };
            if regs.read(MAGIC) == MAGIC_VALUE && regs.read(DEVICE_ID) == NET_DEVICE {
                if regs.read(VERSION) != 2 {
                    return Err(NicError::Refused("legacy transport (want version 2)"));
                }
                return Self::bring_up(regs);
            }
        }
        Err(NicError::NotFound)
    }

    /// Driver initialisation, virtio 1.1 section 3.1.1.
    fn bring_up(regs: Mmio) -> Result<Self, NicError> {
        regs.write(STATUS, 0);
        regs.write(STATUS, ACKNOWLEDGE);
        regs.write(STATUS, ACKNOWLEDGE | DRIVER);
        let offered = features(&regs);
        let wanted = F_VERSION_1 | F_MAC;
        if offered & wanted != wanted {
            return Err(NicError::Refused("features (VERSION_1 and MAC)"));
        }
        regs.write(DRIVER_FEATURES_SEL, 0);
        regs.write(DRIVER_FEATURES, wanted as u32);
        regs.write(DRIVER_FEATURES_SEL, 1);
        regs.write(DRIVER_FEATURES, (wanted >> 32) as u32);
        regs.write(STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
        if regs.read(STATUS) & FEATURES_OK == 0 {
            return Err(NicError::Refused("FEATURES_OK"));
        }
        let mut rx = Queue::new(&regs, RX_QUEUE)?;
        let tx = Queue::new(&regs, TX_QUEUE)?;
        let mut mac = [0u8; 6];
        for (i, byte) in mac.iter_mut().enumerate() {
            // The config space is byte-addressed; read each byte from its aligned word.
            let offset = CONFIG + i as u32;
            *byte = (regs.read(offset & !3) >> (8 * (offset & 3))) as u8;
        }
        for id in 0..QUEUE_SIZE {
            rx.offer(id, BUFFER as u32, true);
        }
        regs.write(STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
        regs.write(QUEUE_NOTIFY, RX_QUEUE);
        Ok(Self {
            regs,
            mac: Mac(mac),
            rx,
            tx,
            tx_in_flight: 0,
            tx_free: (0..QUEUE_SIZE).rev().collect(),
            stats: NicStats::default(),
        })
    }

    /// Takes back the transmit descriptors the device is done with.
    fn reclaim_tx(&mut self) {
        while let Some((id, _)) = self.tx.take_used() {
            if self.tx_in_flight > 0 && self.tx_free.push(id).is_ok() {
                self.tx_in_flight -= 1;
            }
        }
    }
}

/// The device's 64 feature bits.
fn features(regs: &Mmio) -> u64 {
    regs.write(DEVICE_FEATURES_SEL, 0);
    let low = u64::from(regs.read(DEVICE_FEATURES));
    regs.write(DEVICE_FEATURES_SEL, 1);
    low | u64::from(regs.read(DEVICE_FEATURES)) << 32
}

impl Nic for VirtioNet {
    fn mac(&self) -> Mac {
        self.mac
    }

    fn send(&mut self, frame: &[u8]) -> bool {
        if frame.len() > MAX_FRAME {
            return false;
        }
        self.reclaim_tx();
        let Some(id) = self.tx_free.pop() else {
            self.stats.send_full += 1;
            return false;
        };
        let buffer = self.tx.buffer(id);
        // SAFETY: buffer `id` is free (the device returned it, or never had it); header and
        // frame fit its 2 KiB (MAX_FRAME checked).
        unsafe {
            dma::write(buffer, &[0; NET_HDR]);
            dma::write(buffer + NET_HDR as u64, frame);
        }
        self.tx.offer(id, (NET_HDR + frame.len()) as u32, false);
        self.tx_in_flight += 1;
        self.regs.write(QUEUE_NOTIFY, TX_QUEUE);
        self.stats.sent += 1;
        true
    }

    fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        loop {
            let (id, written) = self.rx.take_used()?;
            let len = (written as usize)
                .checked_sub(NET_HDR)
                .filter(|&len| len <= buf.len() && written as u64 <= BUFFER);
            if let Some(len) = len {
                // SAFETY: the device returned buffer `id` with `written` bytes (checked to lie
                // in it); it is the driver's until offered again below.
                unsafe { dma::read(self.rx.buffer(id) + NET_HDR as u64, &mut buf[..len]) };
            }
            self.rx.offer(id, BUFFER as u32, true);
            self.regs.write(QUEUE_NOTIFY, RX_QUEUE);
            if len.is_some() {
                self.stats.received += 1;
                return len;
            }
            self.stats.rx_errors += 1;
        }
    }

    fn stats(&self) -> NicStats {
        self.stats
    }
}
