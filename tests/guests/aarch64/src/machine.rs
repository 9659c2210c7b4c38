//! The machine the guest runs on, as the device tree the hypervisor passed in X0 describes it
//! (arch/aarch64/src/dt.rs writes it): where the PL011 is, and which GIC with which frames.
//! [`discover`] reads it on the boot vCPU before anything prints or touches the GIC, maps those
//! devices and records them in the console's and the GIC's statics; vCPUs started later (PSCI
//! CPU_ON) find them there. Without a tree the statics keep QEMU `virt`'s GICv3 machine.

use core::arch::asm;

use tandem_guest_common::fdt::Fdt;

use crate::gic::{self, Gic};
use crate::{BLOCK_DEVICE, Guest, Runtime, console, hypercall};

/// The runtime's identity map (lib.rs) is made of 1 GiB level-1 blocks: RAM is block 1.
const BLOCK: u64 = 1 << 30;
const RAM: u64 = BLOCK;
/// The map's input addresses: TCR_EL1.T0SZ = 25, 39 bits.
const MAPPABLE: u64 = 1 << 39;
/// A GICv3's redistributor stride when the tree names no CPU to divide its region by: two 64 KiB
/// frames (IHI 0069, RD_base and SGI_base).
const GICR_STRIDE: u64 = 0x2_0000;
/// The compatibles of a GICv2 (binding interrupt-controller/arm,gic.yaml): Tandem writes QEMU
/// `virt`'s, a Raspberry Pi's tree names its GIC-400.
const GIC_V2: [&str; 2] = ["arm,cortex-a15-gic", "arm,gic-400"];

unsafe extern "C" {
    /// The image's first instruction (lib.rs); the loader puts the tree below it.
    fn _start();
}

/// The device tree at the address the hypervisor passed in X0, if there is a well-formed one
/// between the start of RAM and the image.
pub fn tree() -> Option<Fdt<'static>> {
    let dt = crate::device_tree();
    let room = (_start as *const () as u64).checked_sub(dt)?;
    if dt < RAM {
        return None;
    }
    // SAFETY: [dt, dt + room) lies in the RAM block the runtime maps as Normal memory, below
    // the image: the partition's memory, where the hypervisor wrote the tree before the guest
    // started and where nothing writes while the guest runs.
    Fdt::new(unsafe { core::slice::from_raw_parts(dt as *const u8, room as usize) })
}

/// Reads the tree and takes the PL011 and the GIC it names, mapped as device memory.
pub(crate) fn discover() {
    let Some(tree) = tree() else { return };
    if let Some((base, size)) = tree.device("arm,pl011").and_then(|n| tree.reg(&n, 0)) {
        map_device(base, size);
        console::set_base(base);
    }
    let Some((gic, frames)) = find_gic(&tree) else {
        return;
    };
    frames
        .into_iter()
        .for_each(|(base, size)| map_device(base, size));
    // ID_AA64PFR0_EL1.GIC, bits 27:24 (Arm ARM, ID_AA64PFR0_EL1): 0 means no GICv3 system
    // registers, so a GICv3 tree on such a CPU would fault at the first ICC_ access.
    let pfr0: u64;
    // SAFETY: reads an ID register.
    unsafe { asm!("mrs {}, id_aa64pfr0_el1", out(reg) pfr0, options(nomem, nostack)) };
    if matches!(gic, Gic::V3 { .. }) && pfr0 >> 24 & 0xf == 0 {
        panic!("the device tree names a GICv3 but this CPU has no GICv3 CPU interface");
    }
    gic::configure(gic);
}

/// The tree's GIC, a child of the root, and its two register regions (address, size): a
/// GICv3's distributor and redistributors, the latter divided among the tree's CPUs; a GICv2's
/// distributor and CPU interface.
fn find_gic(tree: &Fdt<'_>) -> Option<(Gic, [(u64, u64); 2])> {
    if let Some(node) = tree.device("arm,gic-v3") {
        let frames = [tree.reg(&node, 0)?, tree.reg(&node, 1)?];
        let cpus = tree
            .nodes()
            .filter(|n| n.property("device_type") == Some(b"cpu\0"))
            .count() as u64;
        let gic = Gic::V3 {
            distributor: frames[0].0,
            redistributors: frames[1].0,
            stride: frames[1].1.checked_div(cpus).unwrap_or(GICR_STRIDE),
        };
        return Some((gic, frames));
    }
    let node = GIC_V2.iter().find_map(|c| tree.device(c))?;
    let frames = [tree.reg(&node, 0)?, tree.reg(&node, 1)?];
    let gic = Gic::V2 {
        distributor: frames[0].0,
        cpu_interface: frames[1].0,
    };
    Some((gic, frames))
}

/// Identity-maps the 1 GiB blocks holding `[base, base + size)` as device memory, where the
/// runtime's map does not cover them yet. A device the map cannot reach (in the RAM block or
/// past 39 bits) ends the guest, reported through CONSOLE_WRITE since the UART may be that
/// device.
fn map_device(base: u64, size: u64) {
    let last = base.saturating_add(size.max(1) - 1);
    let blocks = base / BLOCK..=last / BLOCK;
    if blocks.contains(&(RAM / BLOCK)) || last >= MAPPABLE {
        Guest::console_write(b"guest: a device lies outside what the runtime can map\n");
        hypercall::shutdown(0xdead);
    }
    let table: u64;
    // SAFETY: reads the translation table base the runtime set (lib.rs, guest_mmu_on).
    unsafe { asm!("mrs {}, ttbr0_el1", out(reg) table, options(nomem, nostack)) };
    let table = (table & !0xfff) as *mut u64;
    for block in blocks {
        // SAFETY: an entry of the runtime's level-1 table (512 entries, `block` < 512 as
        // checked above) in identity-mapped RAM, written only here, by the boot vCPU before it
        // starts any other.
        unsafe {
            let entry = table.add(block as usize);
            if entry.read_volatile() == 0 {
                entry.write_volatile(BLOCK_DEVICE | (block * BLOCK));
            }
        }
    }
    // The entries were invalid, which no TLB holds (Arm ARM, "Translation Lookaside Buffers"):
    // the DSB makes the writes visible to the table walk, the ISB makes the accesses after it
    // translate through the new entries.
    // SAFETY: barriers only.
    unsafe { asm!("dsb ishst", "isb", options(nostack)) };
}
