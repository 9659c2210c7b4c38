//! The device tree a partition boots with: exactly what it owns (its memory, its vCPUs with PSCI
//! over HVC, the emulated GICv3 with one redistributor per vCPU, the generic timer's PPIs, its
//! PL011) and its argument string as `/chosen/bootargs`, in the shape Linux expects of QEMU
//! `virt` (Documentation/devicetree/bindings: arm/psci, timer/arm,arch_timer,
//! interrupt-controller/arm,gic-v3, serial/pl011).

use core::fmt::Write;

use heapless::String;
use tandem_core::config::Partition;
use tandem_core::fdt::{FdtWriter, TooSmall};

use crate::gic::GICR_STRIDE;
use crate::platform::GUEST_UART;
use crate::vgic::{GICD_SIZE, GUEST_GICD, GUEST_GICR};

const GIC_PHANDLE: u32 = 1;
const CLOCK_PHANDLE: u32 = 2;
/// GIC interrupt specifiers: type (0 = SPI, 1 = PPI), number, flags (4 = level, active high).
const PPI: u32 = 1;
const SPI: u32 = 0;
const LEVEL_HIGH: u32 = 4;
const UART_SPI: u32 = 1;

fn node_name(prefix: &str, address: u64) -> String<40> {
    let mut s = String::new();
    let _ = write!(s, "{prefix}@{address:x}");
    s
}

/// Writes partition `p`'s device tree into `buf`.
pub fn write(p: &Partition, id: u32, buf: &mut [u8]) -> Result<usize, TooSmall> {
    let mut w = FdtWriter::new(buf);
    let vcpus = p.cpus.len() as u64;
    w.begin_node("");
    w.prop_cells("#address-cells", &[2]);
    w.prop_cells("#size-cells", &[2]);
    w.prop_str("compatible", "linux,dummy-virt");
    let mut model: String<48> = String::new();
    let _ = write!(model, "Tandem partition {} ({})", id, p.name.as_str());
    w.prop_str("model", &model);
    w.prop_cells("interrupt-parent", &[GIC_PHANDLE]);

    w.begin_node("chosen");
    w.prop_str("bootargs", &p.args);
    w.prop_str("stdout-path", &node_name("/pl011", GUEST_UART));
    w.end_node();

    for r in &p.memory {
        w.begin_node(&node_name("memory", r.gpa.raw()));
        w.prop_str("device_type", "memory");
        w.prop_u64s("reg", &[r.gpa.raw(), r.size]);
        w.end_node();
    }

    w.begin_node("cpus");
    w.prop_cells("#address-cells", &[1]);
    w.prop_cells("#size-cells", &[0]);
    for n in 0..vcpus {
        w.begin_node(&node_name("cpu", n));
        w.prop_str("device_type", "cpu");
        w.prop_str("compatible", "arm,armv8");
        w.prop_cells("reg", &[n as u32]);
        w.prop_str("enable-method", "psci");
        w.end_node();
    }
    w.end_node();

    w.begin_node("psci");
    w.prop("compatible", b"arm,psci-1.0\0arm,psci-0.2\0");
    w.prop_str("method", "hvc");
    w.end_node();

    w.begin_node("timer");
    w.prop_str("compatible", "arm,armv8-timer");
    // Secure physical (13), non-secure physical (14), virtual (11), hypervisor (10) PPIs.
    w.prop_cells(
        "interrupts",
        &[
            PPI, 13, LEVEL_HIGH, PPI, 14, LEVEL_HIGH, PPI, 11, LEVEL_HIGH, PPI, 10, LEVEL_HIGH,
        ],
    );
    w.prop_empty("always-on");
    w.end_node();

    w.begin_node(&node_name("intc", GUEST_GICD));
    w.prop_str("compatible", "arm,gic-v3");
    w.prop_cells("#interrupt-cells", &[3]);
    w.prop_empty("interrupt-controller");
    w.prop_u64s(
        "reg",
        &[GUEST_GICD, GICD_SIZE, GUEST_GICR, GICR_STRIDE * vcpus],
    );
    w.prop_cells("phandle", &[GIC_PHANDLE]);
    w.end_node();

    w.begin_node("apb-pclk");
    w.prop_str("compatible", "fixed-clock");
    w.prop_cells("#clock-cells", &[0]);
    w.prop_cells("clock-frequency", &[24_000_000]);
    w.prop_cells("phandle", &[CLOCK_PHANDLE]);
    w.end_node();

    w.begin_node(&node_name("pl011", GUEST_UART));
    w.prop("compatible", b"arm,pl011\0arm,primecell\0");
    w.prop_u64s("reg", &[GUEST_UART, tandem_core::devices::pl011::SIZE]);
    w.prop_cells("interrupts", &[SPI, UART_SPI, LEVEL_HIGH]);
    w.prop_cells("clocks", &[CLOCK_PHANDLE, CLOCK_PHANDLE]);
    w.prop("clock-names", b"uartclk\0apb_pclk\0");
    w.end_node();

    w.end_node();
    w.finish()
}
