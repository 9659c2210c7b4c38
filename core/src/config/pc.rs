//! What a PC keeps for itself, whatever a configuration says: the first MiB of memory and the
//! chipset ports that the hypervisor or the machine's integrity depends on.

/// Below 1 MiB live the real-mode IVT and BIOS data area, the AP start-up trampoline (0x8000,
/// where SIPI sends the other CPUs: SDM Vol. 3A, 11.4.4.1), the VGA hole (0xA0000-0xBFFFF) and
/// the option and system ROMs. No partition's memory may lie there.
pub const LOW_MEMORY_END: u64 = 0x10_0000;

/// A fixed legacy port range and the device it belongs to.
pub struct MachinePorts {
    pub first: u16,
    pub last: u16,
    pub device: &'static str,
}

const fn ports(first: u16, last: u16, device: &'static str) -> MachinePorts {
    MachinePorts {
        first,
        last,
        device,
    }
}

/// Ports no partition may reach directly (`passthrough`): a guest owning them could mask or
/// reprogram the interrupt and timer hardware, make DMA to any address, reset the machine or
/// reach every PCI device's configuration space. The POST port 0x80 is not among them.
pub const MACHINE_PORTS: &[MachinePorts] = &[
    ports(0x00, 0x1f, "ISA DMA controller 1"),
    ports(0x20, 0x21, "master PIC"),
    ports(0x40, 0x43, "PIT"),
    ports(0x60, 0x60, "keyboard controller"),
    ports(0x61, 0x61, "system control port B (speaker, NMI status)"),
    ports(0x64, 0x64, "keyboard controller (it can reset the CPU)"),
    ports(0x81, 0x8f, "ISA DMA page registers"),
    ports(0x92, 0x92, "system control port A (fast A20, reset)"),
    ports(0xa0, 0xa1, "slave PIC"),
    ports(0xc0, 0xdf, "ISA DMA controller 2"),
    ports(0xcf8, 0xcff, "PCI configuration space"),
];
