//! The network interface the hypervisor owns: the log link and the witness of a fault-tolerant
//! partition across boards travel over it. Polled (no interrupt reaches the hypervisor), one
//! frame at a time, from the one CPU that runs the pair's copy on this board.
//!
//! Which NIC a board has is board data ([`tandem_core::config::Nic`]); the drivers only touch
//! the device's registers and DMA rings in frames of the hypervisor's own memory.

mod dma;
pub mod e1000;
mod mmio;
pub mod virtio;

use tandem_core::config::{self, Mac};

use e1000::E1000;
use virtio::VirtioNet;

use crate::backend::Backend;

/// The board's NIC once up; taken by the CPU that runs the link over it.
static NIC: spin::Mutex<Option<BoardNic>> = spin::Mutex::new(None);

/// Brings up the board's NIC (bootstrap CPU, at bring-up). A NIC that does not come up is
/// reported here; whatever needs it then finds none and says so.
pub fn start<B: Backend>(nic: &config::Nic) {
    match BoardNic::bring_up(nic, B::pci_bar0) {
        Ok(up) => {
            defmt::info!("net: {=str} up, MAC {}", up.name(), MacFmt(up.mac()));
            *NIC.lock() = Some(up);
        }
        Err(e) => defmt::error!("net: the board's NIC did not come up: {}", e),
    }
}

/// Takes the board's NIC, if it came up and nobody took it before.
pub fn take() -> Option<BoardNic> {
    NIC.lock().take()
}

/// Largest Ethernet frame without its FCS (1500 bytes of payload).
pub const MAX_FRAME: usize = 1514;

/// Why a NIC could not be brought up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum NicError {
    /// No device of the board's kind was found where the board says it is.
    NotFound,
    /// The device refused a step of its initialisation (the step).
    Refused(&'static str),
    /// No frames left for the rings.
    OutOfFrames,
}

/// Counters a NIC keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NicStats {
    pub sent: u64,
    pub received: u64,
    /// Frames not sent because the transmit ring was full.
    pub send_full: u64,
    /// Frames the device flagged bad, or too long for the caller's buffer.
    pub rx_errors: u64,
}

/// A polled Ethernet interface.
pub trait Nic {
    /// The interface's own address.
    fn mac(&self) -> Mac;
    /// Queues `frame` (destination MAC first, no FCS) for sending; false if the transmit ring is
    /// full and the frame was dropped (the link above retransmits).
    fn send(&mut self, frame: &[u8]) -> bool;
    /// Copies the next received frame into `buf` and returns its length, if one has arrived.
    fn recv(&mut self, buf: &mut [u8]) -> Option<usize>;
    /// Traffic counters.
    fn stats(&self) -> NicStats;
}

/// Formats a MAC address for the log.
pub struct MacFmt(pub Mac);

impl defmt::Format for MacFmt {
    fn format(&self, f: defmt::Formatter) {
        let [a, b, c, d, e, g] = self.0.0;
        defmt::write!(
            f,
            "{=u8:02x}:{=u8:02x}:{=u8:02x}:{=u8:02x}:{=u8:02x}:{=u8:02x}",
            a,
            b,
            c,
            d,
            e,
            g
        );
    }
}

/// The board's NIC, whichever driver runs it (statically dispatched: a function pointer or a
/// trait object would not survive a microreboot's fresh image).
pub enum BoardNic {
    E1000(E1000),
    Virtio(VirtioNet),
}

impl BoardNic {
    /// Brings up the NIC `nic` describes; `pci_bar0` finds the register window of a PCI device
    /// with one of the given (vendor, device) IDs, with memory decoding and bus mastering on
    /// (the backend's PCI access; `None` where the board has no PCI).
    pub fn bring_up(
        nic: &config::Nic,
        pci_bar0: impl Fn(&[(u16, u16)]) -> Option<u64>,
    ) -> Result<Self, NicError> {
        match *nic {
            config::Nic::E1000 => {
                let bar0 = pci_bar0(&e1000::PCI_IDS).ok_or(NicError::NotFound)?;
                // SAFETY: the backend found an 8254x at `bar0` and enabled it; nothing else
                // drives it (the hypervisor owns the board's NIC, no partition maps it).
                unsafe { E1000::new(bar0) }.map(Self::E1000)
            }
            config::Nic::VirtioMmio {
                base,
                slots,
                stride,
            } => {
                // SAFETY: the board file places virtio-mmio transports there, which only the
                // hypervisor maps (partitions see none of the machine's devices).
                unsafe { VirtioNet::probe(base.raw(), slots, stride) }.map(Self::Virtio)
            }
        }
    }
}

impl BoardNic {
    /// The driver's name, for the log.
    pub fn name(&self) -> &'static str {
        match self {
            Self::E1000(_) => "e1000",
            Self::Virtio(_) => "virtio-net",
        }
    }
}

impl Nic for BoardNic {
    fn mac(&self) -> Mac {
        match self {
            Self::E1000(n) => n.mac(),
            Self::Virtio(n) => n.mac(),
        }
    }

    fn send(&mut self, frame: &[u8]) -> bool {
        match self {
            Self::E1000(n) => n.send(frame),
            Self::Virtio(n) => n.send(frame),
        }
    }

    fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        match self {
            Self::E1000(n) => n.recv(buf),
            Self::Virtio(n) => n.recv(buf),
        }
    }

    fn stats(&self) -> NicStats {
        match self {
            Self::E1000(n) => n.stats(),
            Self::Virtio(n) => n.stats(),
        }
    }
}
