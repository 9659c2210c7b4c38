//! PCI configuration mechanism #1 (ports 0xCF8/0xCFC, PCI Local Bus Specification 3.0, 3.2.2.3.2):
//! finding the board's NIC on bus 0. Only the bootstrap CPU uses it, at bring-up, before any
//! partition runs (no partition is given these ports: `ports` refuses them).

use x86_64::instructions::port::Port;

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;
const ENABLE: u32 = 1 << 31;

const VENDOR_DEVICE: u8 = 0x00;
const COMMAND: u8 = 0x04;
const BAR0: u8 = 0x10;
/// Command register: respond to memory accesses, and master the bus (DMA).
const MEMORY_SPACE: u32 = 1 << 1;
const BUS_MASTER: u32 = 1 << 2;
/// BAR bit 0: an I/O BAR; bits 2:1 = 2: a 64-bit memory BAR (the next BAR holds the high half).
const BAR_IO: u32 = 1;
const BAR_64: u32 = 0b10 << 1;

fn address(device: u8, offset: u8) -> u32 {
    ENABLE | u32::from(device) << 11 | u32::from(offset & 0xfc)
}

fn read(device: u8, offset: u8) -> u32 {
    // SAFETY: the configuration mechanism's two ports, used by this CPU alone at bring-up; the
    // access reads a configuration register of bus 0.
    unsafe {
        Port::<u32>::new(CONFIG_ADDRESS).write(address(device, offset));
        Port::<u32>::new(CONFIG_DATA).read()
    }
}

fn write(device: u8, offset: u8, value: u32) {
    // SAFETY: as in `read`; the callers write only the command register of the NIC they own.
    unsafe {
        Port::<u32>::new(CONFIG_ADDRESS).write(address(device, offset));
        Port::<u32>::new(CONFIG_DATA).write(value);
    }
}

/// The memory BAR0 of the first function 0 on bus 0 with one of `ids`, decoding and mastering.
pub fn bar0(ids: &[(u16, u16)]) -> Option<u64> {
    let device = (0..32u8).find(|&d| {
        let id = read(d, VENDOR_DEVICE);
        ids.contains(&(id as u16, (id >> 16) as u16))
    })?;
    let low = read(device, BAR0);
    if low & BAR_IO != 0 {
        return None;
    }
    let high = if low & BAR_64 != 0 {
        u64::from(read(device, BAR0 + 4))
    } else {
        0
    };
    let base = high << 32 | u64::from(low & !0xf);
    // The identity map covers 4 GiB (`boot`): a window above it cannot be reached.
    if base == 0 || base >= 1 << 32 {
        return None;
    }
    write(
        device,
        COMMAND,
        read(device, COMMAND) | MEMORY_SPACE | BUS_MASTER,
    );
    Some(base)
}
