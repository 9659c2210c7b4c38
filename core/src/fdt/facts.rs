//! The board file against the firmware's device tree: where the firmware describes the machine,
//! the hypervisor checks that its board file describes the same one (RAM, CPUs, GIC, console
//! UART) before it touches any of them, and names the first field that disagrees.

use crate::config::{Board, GicCpu, Uart};

use super::FdtReader;
use super::nodes::Node;

/// The first board-file field the device tree contradicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Disagreement {
    /// `ram`: the board's RAM lies outside every range the tree's memory nodes give;
    /// `firmware` is the largest of them (0, 0 when there is none).
    Ram {
        base: u64,
        size: u64,
        firmware: (u64, u64),
    },
    /// `cpus`: the board names more CPUs than the tree has.
    Cpus { board: u8, firmware: usize },
    /// `gic`: the tree's GIC is not the version the board file describes (`board`; `firmware`
    /// 0 when the tree has no GIC).
    GicVersion { board: u8, firmware: u8 },
    /// One of the GIC's frames (`field`) is not where the tree's GIC has it.
    GicFrame {
        field: &'static str,
        board: u64,
        firmware: u64,
    },
    /// `console`: the tree has no PL011 at the board's address.
    Console { base: u64 },
}

impl core::fmt::Display for Disagreement {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Disagreement::Ram {
                base,
                size,
                firmware: (at, bytes),
            } => write!(
                f,
                "ram: the board file says {size:#x} bytes at {base:#x}, outside the firmware's \
                 memory (largest range {bytes:#x} bytes at {at:#x})"
            ),
            Disagreement::Cpus { board, firmware } => write!(
                f,
                "cpus: the board file says {board}, the firmware's tree has {firmware}"
            ),
            Disagreement::GicVersion { board, firmware: 0 } => write!(
                f,
                "gic: the board file describes a GICv{board}, the firmware's tree no GIC"
            ),
            Disagreement::GicVersion { board, firmware } => write!(
                f,
                "gic: the board file describes a GICv{board}, the firmware's tree a GICv{firmware}"
            ),
            Disagreement::GicFrame {
                field,
                board,
                firmware,
            } => write!(
                f,
                "{field}: the board file says {board:#x}, the firmware's tree {firmware:#x}"
            ),
            Disagreement::Console { base } => write!(
                f,
                "console: the board file says a PL011 at {base:#x}, the firmware's tree has none there"
            ),
        }
    }
}

/// GICv2 distributors as bindings name them (interrupt-controller/arm,gic.yaml).
const GIC_V2: [&str; 4] = [
    "arm,gic-400",
    "arm,cortex-a15-gic",
    "arm,cortex-a9-gic",
    "arm,cortex-a7-gic",
];

/// Checks `board` against `tree`, field by field in the order the board file lists them.
pub fn check(tree: &FdtReader<'_>, board: &Board) -> Result<(), Disagreement> {
    check_ram(tree, board)?;
    let cpus = tree.nodes().filter(|n| n.has_type("cpu")).count();
    if usize::from(board.cpus) > cpus {
        return Err(Disagreement::Cpus {
            board: board.cpus,
            firmware: cpus,
        });
    }
    if let Some(gic) = &board.gic {
        let v3 = tree.nodes().find(|n| n.is_compatible("arm,gic-v3"));
        let v2 = tree
            .nodes()
            .find(|n| GIC_V2.iter().any(|c| n.is_compatible(c)));
        let found = if v3.is_some() {
            3
        } else {
            2 * u8::from(v2.is_some())
        };
        // The bindings' `reg` order: GICv3 distributor then redistributors
        // (arm,gic-v3.yaml); GICv2 distributor, CPU interface, virtual interface control and
        // virtual CPU interface (arm,gic.yaml).
        match (gic.cpu, v3, v2) {
            (GicCpu::V3 { redistributors, .. }, Some(node), _) => {
                frame(&node, 0, "gic.distributor", gic.distributor.raw())?;
                frame(&node, 1, "gic.redistributors", redistributors.raw())?;
            }
            (
                GicCpu::V2 {
                    cpu_interface,
                    hyp_interface,
                    virtual_cpu_interface,
                },
                None,
                Some(node),
            ) => {
                frame(&node, 0, "gic.distributor", gic.distributor.raw())?;
                frame(&node, 1, "gic.cpu_interface", cpu_interface.raw())?;
                frame(&node, 2, "gic.hyp_interface", hyp_interface.raw())?;
                frame(
                    &node,
                    3,
                    "gic.virtual_cpu_interface",
                    virtual_cpu_interface.raw(),
                )?;
            }
            (cpu, ..) => {
                let board = match cpu {
                    GicCpu::V3 { .. } => 3,
                    GicCpu::V2 { .. } => 2,
                };
                return Err(Disagreement::GicVersion {
                    board,
                    firmware: found,
                });
            }
        }
    }
    if let Uart::Pl011 { base } = board.console {
        let base = base.raw();
        let found = tree
            .nodes()
            .any(|n| n.is_compatible("arm,pl011") && n.reg(0).is_some_and(|(at, _)| at == base));
        if !found {
            return Err(Disagreement::Console { base });
        }
    }
    Ok(())
}

fn check_ram(tree: &FdtReader<'_>, board: &Board) -> Result<(), Disagreement> {
    let (base, end) = (board.ram.base.raw(), board.ram.end());
    let mut largest = (0, 0);
    for node in tree.nodes().filter(|n| n.has_type("memory")) {
        for range in (0..).map_while(|i| node.reg(i)) {
            if range.0 <= base && end <= range.0.saturating_add(range.1) {
                return Ok(());
            }
            if range.1 > largest.1 {
                largest = range;
            }
        }
    }
    Err(Disagreement::Ram {
        base,
        size: board.ram.size,
        firmware: largest,
    })
}

/// Whether `reg` entry `index` of the GIC's node starts at `board`'s address.
fn frame(
    node: &Node<'_>,
    index: usize,
    field: &'static str,
    board: u64,
) -> Result<(), Disagreement> {
    match node.reg(index) {
        Some((at, _)) if at == board => Ok(()),
        found => Err(Disagreement::GicFrame {
            field,
            board,
            firmware: found.map_or(0, |(at, _)| at),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::HostPhysAddr;
    use crate::fdt::FdtWriter;

    /// QEMU `virt` as it describes itself with 2 CPUs, 256 MiB and a GICv3; the PL011 under a
    /// bus whose `ranges` moves it, as a Raspberry Pi's are.
    fn qemu_virt(buf: &mut [u8], gic: &str) -> usize {
        let mut w = FdtWriter::new(buf);
        w.begin_node("");
        w.prop_cells("#address-cells", &[2]);
        w.prop_cells("#size-cells", &[2]);
        w.begin_node("memory@40000000");
        w.prop_str("device_type", "memory");
        w.prop_u64s("reg", &[0x4000_0000, 0x1000_0000]);
        w.end_node();
        w.begin_node("cpus");
        w.prop_cells("#address-cells", &[1]);
        w.prop_cells("#size-cells", &[0]);
        for i in 0..2 {
            w.begin_node(if i == 0 { "cpu@0" } else { "cpu@1" });
            w.prop_str("device_type", "cpu");
            w.prop_cells("reg", &[i]);
            w.end_node();
        }
        w.end_node();
        w.begin_node("intc@8000000");
        w.prop("compatible", gic.as_bytes());
        w.prop_u64s("reg", &[0x800_0000, 0x1_0000, 0x80a_0000, 0xf6_0000]);
        w.end_node();
        w.begin_node("soc");
        w.prop_cells("#address-cells", &[1]);
        w.prop_cells("#size-cells", &[1]);
        // Bus address 0x7e000000 is CPU address 0x08e00000, for 16 MiB.
        w.prop_cells("ranges", &[0x7e00_0000, 0, 0x08e0_0000, 0x0100_0000]);
        w.begin_node("serial@7e201000");
        w.prop("compatible", b"arm,pl011\0arm,primecell\0");
        w.prop_cells("reg", &[0x7e20_1000, 0x200]);
        w.end_node();
        w.end_node();
        w.end_node();
        w.finish().unwrap()
    }

    /// The sample aarch64 board, its console where the tree's bus puts the PL011.
    fn board() -> Board {
        let mut board = crate::fake::aarch64_system().board;
        board.console = Uart::Pl011 {
            base: HostPhysAddr::new(0x0900_1000),
        };
        board
    }

    fn checked(board: &Board, gic: &str) -> Result<(), Disagreement> {
        let mut buf = [0u8; 2048];
        let len = qemu_virt(&mut buf, gic);
        check(&FdtReader::new(&buf[..len]).unwrap(), board)
    }

    const V3: &str = "arm,gic-v3\0";

    #[test]
    fn the_board_that_matches_its_tree_passes() {
        assert_eq!(checked(&board(), V3), Ok(()));
        let mut fewer = board();
        fewer.cpus = 1;
        fewer.ram.size = 0x800_0000;
        assert_eq!(
            checked(&fewer, V3),
            Ok(()),
            "a board may use less than there is"
        );
    }

    #[test]
    fn each_field_that_disagrees_is_named() {
        let mut b = board();
        b.ram.size = 0x2000_0000;
        assert_eq!(
            checked(&b, V3),
            Err(Disagreement::Ram {
                base: 0x4000_0000,
                size: 0x2000_0000,
                firmware: (0x4000_0000, 0x1000_0000)
            })
        );
        let mut b = board();
        b.cpus = 4;
        assert_eq!(
            checked(&b, V3),
            Err(Disagreement::Cpus {
                board: 4,
                firmware: 2
            })
        );
        let mut b = board();
        if let Some(gic) = &mut b.gic {
            gic.cpu = GicCpu::V3 {
                redistributors: HostPhysAddr::new(0x80b_0000),
                redistributor_stride: 0x2_0000,
            };
        }
        assert_eq!(
            checked(&b, V3),
            Err(Disagreement::GicFrame {
                field: "gic.redistributors",
                board: 0x80b_0000,
                firmware: 0x80a_0000
            })
        );
        assert_eq!(
            checked(&board(), "arm,gic-400\0arm,cortex-a15-gic\0"),
            Err(Disagreement::GicVersion {
                board: 3,
                firmware: 2
            })
        );
        let mut b = board();
        b.console = Uart::Pl011 {
            base: HostPhysAddr::new(0x7e20_1000),
        };
        assert_eq!(
            checked(&b, V3),
            Err(Disagreement::Console { base: 0x7e20_1000 }),
            "a bus address is not the CPU's"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_corruption_never_panics(at in 0usize..2048, value: u8) {
            let mut buf = [0u8; 2048];
            let len = qemu_virt(&mut buf, V3);
            buf[at % len] = value;
            if let Ok(tree) = FdtReader::new(&buf[..len]) {
                let _ = check(&tree, &board());
            }
        }
    }
}
