//! The reader against trees shaped like the ones Tandem writes (arch/aarch64/src/dt.rs), and
//! against damaged ones.

extern crate std;

use std::vec::Vec;

use super::*;

/// The header's size: ten big-endian words (5.2).
const HEADER: usize = 40;

/// A minimal FDT writer: nodes and properties, strings not shared.
struct Writer {
    structs: Vec<u8>,
    strings: Vec<u8>,
}

impl Writer {
    fn new() -> Self {
        Self {
            structs: Vec::new(),
            strings: Vec::new(),
        }
    }

    fn word(&mut self, w: u32) {
        self.structs.extend_from_slice(&w.to_be_bytes());
    }

    fn pad(&mut self) {
        while !self.structs.len().is_multiple_of(4) {
            self.structs.push(0);
        }
    }

    fn begin(&mut self, name: &str) {
        self.word(BEGIN_NODE);
        self.structs.extend_from_slice(name.as_bytes());
        self.structs.push(0);
        self.pad();
    }

    fn end(&mut self) {
        self.word(END_NODE);
    }

    fn prop(&mut self, name: &str, value: &[u8]) {
        self.word(PROP);
        self.word(value.len() as u32);
        self.word(self.strings.len() as u32);
        self.strings.extend_from_slice(name.as_bytes());
        self.strings.push(0);
        self.structs.extend_from_slice(value);
        self.pad();
    }

    fn cells(&mut self, name: &str, cells: &[u32]) {
        let bytes: Vec<u8> = cells.iter().flat_map(|c| c.to_be_bytes()).collect();
        self.prop(name, &bytes);
    }

    fn u64s(&mut self, name: &str, values: &[u64]) {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_be_bytes()).collect();
        self.prop(name, &bytes);
    }

    /// The blob: header, an empty memory reservation map, structure and strings blocks.
    fn finish(mut self) -> Vec<u8> {
        self.word(9);
        let off_struct = HEADER + 16;
        let off_strings = off_struct + self.structs.len();
        let total = off_strings + self.strings.len();
        let header = [
            MAGIC,
            total as u32,
            off_struct as u32,
            off_strings as u32,
            HEADER as u32,
            17,
            16,
            0,
            self.strings.len() as u32,
            self.structs.len() as u32,
        ];
        let mut blob: Vec<u8> = header.iter().flat_map(|w| w.to_be_bytes()).collect();
        blob.extend_from_slice(&[0; 16]);
        blob.extend_from_slice(&self.structs);
        blob.extend_from_slice(&self.strings);
        blob
    }
}

/// A partition's tree as Tandem writes it, with a GICv2 or a GICv3 and two vCPUs.
fn partition(gic_v2: bool) -> Vec<u8> {
    let mut w = Writer::new();
    w.begin("");
    w.cells("#address-cells", &[2]);
    w.cells("#size-cells", &[2]);
    w.prop("compatible", b"linux,dummy-virt\0");
    w.begin("chosen");
    w.prop("bootargs", b"count=3\0");
    w.end();
    w.begin("memory@40000000");
    w.prop("device_type", b"memory\0");
    w.u64s("reg", &[0x4000_0000, 0x40_0000]);
    w.end();
    w.begin("cpus");
    w.cells("#address-cells", &[1]);
    w.cells("#size-cells", &[0]);
    for n in 0..2 {
        w.begin(if n == 0 { "cpu@0" } else { "cpu@1" });
        w.prop("device_type", b"cpu\0");
        w.cells("reg", &[n]);
        w.end();
    }
    w.end();
    if gic_v2 {
        w.begin("intc@ff841000");
        w.prop("compatible", b"arm,cortex-a15-gic\0");
        w.prop("interrupt-controller", b"");
        w.u64s("reg", &[0xff84_1000, 0x1000, 0xff84_2000, 0x2000]);
    } else {
        w.begin("intc@8000000");
        w.prop("compatible", b"arm,gic-v3\0");
        w.prop("interrupt-controller", b"");
        w.u64s("reg", &[0x0800_0000, 0x1_0000, 0x080a_0000, 0x4_0000]);
    }
    w.end();
    w.begin("pl011@fe201000");
    w.prop("compatible", b"arm,pl011\0arm,primecell\0");
    w.u64s("reg", &[0xfe20_1000, 0x1000]);
    w.end();
    w.end();
    w.finish()
}

#[test]
fn finds_the_devices_and_their_registers() {
    for v2 in [false, true] {
        let blob = partition(v2);
        let fdt = Fdt::new(&blob).unwrap();
        let uart = fdt.device("arm,pl011").unwrap();
        assert_eq!(uart.name, b"pl011@fe201000");
        assert_eq!(fdt.reg(&uart, 0), Some((0xfe20_1000, 0x1000)));
        assert!(fdt.device("arm,primecell").is_some());
        let compatible = if v2 {
            "arm,cortex-a15-gic"
        } else {
            "arm,gic-v3"
        };
        let gic = fdt.device(compatible).unwrap();
        assert!(fdt.device("arm,gic-v3").is_some() != v2);
        let frames = (fdt.reg(&gic, 0).unwrap(), fdt.reg(&gic, 1).unwrap());
        if v2 {
            assert_eq!(frames, ((0xff84_1000, 0x1000), (0xff84_2000, 0x2000)));
        } else {
            assert_eq!(frames, ((0x0800_0000, 0x1_0000), (0x080a_0000, 0x4_0000)));
        }
        assert_eq!(fdt.reg(&gic, 2), None, "past the end of reg");
        assert!(fdt.device("arm,armv8-pmuv3").is_none());
    }
}

#[test]
fn walks_nodes_with_their_depth_and_properties() {
    let blob = partition(false);
    let fdt = Fdt::new(&blob).unwrap();
    let nodes: Vec<_> = fdt.nodes().map(|n| (n.name, n.depth)).collect();
    assert_eq!(nodes[0], (&b""[..], 0));
    assert_eq!(nodes[5], (&b"cpu@1"[..], 2));
    assert_eq!(nodes.last(), Some(&(&b"pl011@fe201000"[..], 1)));
    let cpus = fdt
        .nodes()
        .filter(|n| n.property("device_type") == Some(b"cpu\0"))
        .count();
    assert_eq!(cpus, 2);
    let root = fdt.nodes().next().unwrap();
    assert_eq!(root.cell("#size-cells"), Some(2));
    assert_eq!(root.cell("compatible"), None, "not one cell");
    assert_eq!(root.property("absent"), None);
    // A nested node's reg is in its parent's cells, which this reader does not follow.
    let cpu = fdt.nodes().find(|n| n.name == b"cpu@0").unwrap();
    assert_eq!(fdt.reg(&cpu, 0), None);
}

#[test]
fn one_cell_addresses_and_sizes() {
    let mut w = Writer::new();
    w.begin("");
    w.cells("#address-cells", &[1]);
    w.cells("#size-cells", &[1]);
    w.begin("uart@9000000");
    w.prop("compatible", b"arm,pl011\0");
    w.cells("reg", &[0x0900_0000, 0x1000]);
    w.end();
    w.end();
    let blob = w.finish();
    let fdt = Fdt::new(&blob).unwrap();
    let uart = fdt.device("arm,pl011").unwrap();
    assert_eq!(fdt.reg(&uart, 0), Some((0x0900_0000, 0x1000)));
}

#[test]
fn refuses_bad_headers() {
    let blob = partition(true);
    assert_eq!(total_size(&blob), Some(blob.len()));
    assert!(
        Fdt::new(&blob[..blob.len() - 1]).is_none(),
        "shorter than totalsize"
    );
    let mut bad = blob.clone();
    bad[0] = 0;
    assert!(
        total_size(&bad).is_none() && Fdt::new(&bad).is_none(),
        "magic"
    );
    let mut bad = blob.clone();
    bad[23] = 16;
    assert!(Fdt::new(&bad).is_none(), "version 16 has no size_dt_struct");
    let mut bad = blob.clone();
    bad[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(Fdt::new(&bad).is_none(), "totalsize past the blob");
    let mut bad = blob.clone();
    bad[36..40].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(Fdt::new(&bad).is_none(), "structure block past totalsize");
    assert!(total_size(&blob[..7]).is_none() && Fdt::new(&[]).is_none());
}

#[test]
fn damaged_structure_blocks_end_the_walk_without_reading_outside() {
    let blob = partition(false);
    let fdt = Fdt::new(&blob).unwrap();
    let struct_at = HEADER + 16;
    let struct_len = fdt.structs.len();
    // Every truncation and every corrupted word: no panic, and whatever is found is in bounds.
    for cut in 0..struct_len {
        let mut bad = blob.clone();
        bad[struct_at + cut..struct_at + struct_len].fill(0xff);
        let fdt = Fdt::new(&bad).unwrap();
        for node in fdt.nodes() {
            let _ = node.property("reg");
            let _ = fdt.reg(&node, 0);
        }
    }
    for word in (0..struct_len).step_by(4) {
        for value in [0, 1, 2, 3, 4, 9, 0x7fff_ffff, u32::MAX] {
            let mut bad = blob.clone();
            bad[struct_at + word..struct_at + word + 4].copy_from_slice(&value.to_be_bytes());
            let fdt = Fdt::new(&bad).unwrap();
            for node in fdt.nodes().take(64) {
                let _ = node.is_compatible("arm,pl011");
                let _ = fdt.reg(&node, 1);
            }
        }
    }
}

#[test]
fn a_property_name_outside_the_strings_block_is_no_match() {
    let mut w = Writer::new();
    w.begin("");
    w.prop("compatible", b"x\0");
    w.end();
    let mut blob = w.finish();
    // The name offset of the root's only property: BEGIN_NODE, "\0" padded, PROP, len, nameoff.
    let nameoff = HEADER + 16 + 8 + 8;
    blob[nameoff..nameoff + 4].copy_from_slice(&1000u32.to_be_bytes());
    let fdt = Fdt::new(&blob).unwrap();
    assert_eq!(fdt.nodes().next().unwrap().property("compatible"), None);
}
