//! The device tree a partition boots with: exactly what it owns (its memory, its vCPUs with PSCI
//! over HVC, its GIC (a GICv3 with one redistributor per vCPU, or a GICv2), the generic timer's
//! PPIs, its PL011, the PMU if it uses the PMU) and its argument string as `/chosen/bootargs`, in
//! the shape Linux expects of QEMU `virt` (Documentation/devicetree/bindings: arm/psci,
//! timer/arm,arch_timer, interrupt-controller/arm,gic-v3 and arm,gic, serial/pl011, arm/pmu).

use core::fmt::Write;

use heapless::String;
use tandem_core::config::{Gic, GicCpu, GuestUart, Partition};
use tandem_core::devices::vgic::V2_CPU_INTERFACE_SIZE;
use tandem_core::fdt::{FdtWriter, TooSmall};

const GIC_PHANDLE: u32 = 1;
const CLOCK_PHANDLE: u32 = 2;
/// GIC interrupt specifiers: type (0 = SPI, 1 = PPI), number, flags (4 = level, active high).
const PPI: u32 = 1;
const SPI: u32 = 0;
const LEVEL_HIGH: u32 = 4;

/// The specifier of a PPI (numbered from INTID 16) or an SPI (from INTID 32) (binding
/// interrupt-controller/arm,gic-v3).
fn ppi(intid: u32) -> [u32; 3] {
    [PPI, intid.saturating_sub(16), LEVEL_HIGH]
}

fn spi(intid: u32) -> [u32; 3] {
    [SPI, intid.saturating_sub(32), LEVEL_HIGH]
}

fn node_name(prefix: &str, address: u64) -> String<40> {
    let mut s = String::new();
    let _ = write!(s, "{prefix}@{address:x}");
    s
}

/// What `/chosen` tells the guest: its command line and, for a kernel, where its initial RAM
/// disk lies (`[start, end)`, guest-physical).
pub struct Chosen<'a> {
    pub bootargs: &'a str,
    pub initrd: Option<(u64, u64)>,
}

/// Writes partition `p`'s device tree into `buf`, with the board's `gic` and `uart` window, and
/// a PMU with overflow interrupt `pmu` if the partition uses the PMU (`pmu::granted`).
pub fn write(
    p: &Partition,
    id: u32,
    gic: &Gic,
    uart: GuestUart,
    pmu: Option<u32>,
    chosen: &Chosen,
    buf: &mut [u8],
) -> Result<usize, TooSmall> {
    let mut w = FdtWriter::new(buf);
    let vcpus = p.cpus.len() as u64;
    let uart_base = uart.base.raw();
    w.begin_node("");
    w.prop_cells("#address-cells", &[2]);
    w.prop_cells("#size-cells", &[2]);
    w.prop_str("compatible", "linux,dummy-virt");
    let mut model: String<48> = String::new();
    let _ = write!(model, "Tandem partition {} ({})", id, p.name.as_str());
    w.prop_str("model", &model);
    w.prop_cells("interrupt-parent", &[GIC_PHANDLE]);

    // The chosen node (Documentation/devicetree/bindings/chosen.txt): the command line, the
    // console, and the initial RAM disk as 64-bit addresses.
    w.begin_node("chosen");
    w.prop_str("bootargs", chosen.bootargs);
    w.prop_str("stdout-path", &node_name("/pl011", uart_base));
    if let Some((start, end)) = chosen.initrd {
        w.prop_u64s("linux,initrd-start", &[start]);
        w.prop_u64s("linux,initrd-end", &[end]);
    }
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
    // Secure physical, non-secure physical, virtual and hypervisor timer PPIs, in that order.
    let timers = [
        gic.secure_timer_intid,
        gic.physical_timer_intid,
        gic.virtual_timer_intid,
        gic.hyp_timer_intid,
    ]
    .map(ppi);
    w.prop_cells("interrupts", timers.as_flattened());
    w.prop_empty("always-on");
    w.end_node();

    // The PMU (binding arm/pmu.yaml): its overflow interrupt, a PPI, as on QEMU `virt`. Absent
    // for a partition whose PMU is trapped and hidden.
    if let Some(intid) = pmu {
        w.begin_node("pmu");
        w.prop_str("compatible", "arm,armv8-pmuv3");
        w.prop_cells("interrupts", &ppi(intid));
        w.end_node();
    }

    // The GIC is where the machine's is: an emulated distributor and, on a GICv3, emulated
    // redistributors (binding arm,gic-v3.yaml); on a GICv2 the virtual CPU interface in the CPU
    // interface's place (binding arm,gic.yaml, which QEMU `virt` names arm,cortex-a15-gic).
    let gicd = gic.distributor.raw();
    w.begin_node(&node_name("intc", gicd));
    let (compatible, cpu, cpu_size) = match gic.cpu {
        GicCpu::V3 {
            redistributors,
            redistributor_stride,
        } => (
            "arm,gic-v3",
            redistributors.raw(),
            redistributor_stride * vcpus,
        ),
        GicCpu::V2 { cpu_interface, .. } => (
            "arm,cortex-a15-gic",
            cpu_interface.raw(),
            V2_CPU_INTERFACE_SIZE,
        ),
    };
    w.prop_str("compatible", compatible);
    w.prop_cells("#interrupt-cells", &[3]);
    w.prop_empty("interrupt-controller");
    w.prop_u64s("reg", &[gicd, gic.distributor_size(), cpu, cpu_size]);
    w.prop_cells("phandle", &[GIC_PHANDLE]);
    w.end_node();

    w.begin_node("apb-pclk");
    w.prop_str("compatible", "fixed-clock");
    w.prop_cells("#clock-cells", &[0]);
    w.prop_cells("clock-frequency", &[24_000_000]);
    w.prop_cells("phandle", &[CLOCK_PHANDLE]);
    w.end_node();

    w.begin_node(&node_name("pl011", uart_base));
    w.prop("compatible", b"arm,pl011\0arm,primecell\0");
    w.prop_u64s("reg", &[uart_base, tandem_core::devices::pl011::SIZE]);
    w.prop_cells("interrupts", &spi(uart.intid));
    w.prop_cells("clocks", &[CLOCK_PHANDLE, CLOCK_PHANDLE]);
    w.prop("clock-names", b"uartclk\0apb_pclk\0");
    w.end_node();

    w.end_node();
    w.finish()
}
