//! How the firmware lets a secondary CPU start, as its tree says (Devicetree Specification 0.4,
//! 3.8, `enable-method`): through PSCI CPU_ON, or from a spin table (the Raspberry Pi firmware's
//! Arm stub parks the other cores in a loop reading their `cpu-release-addr`, Linux
//! Documentation/arch/arm64/booting.rst 5).

use super::FdtReader;

/// How CPU `cpu` is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuStart {
    /// PSCI CPU_ON (also the answer when the tree names no method, as QEMU's does not for a
    /// lone CPU).
    Psci,
    /// Write the entry point to this physical address and send an event.
    SpinTable { release: u64 },
}

/// How `tree` says CPU `cpu` (its `reg`, MPIDR Aff0) starts.
pub fn cpu_start(tree: &FdtReader<'_>, cpu: u64) -> CpuStart {
    let node = tree.nodes().filter(|n| n.has_type("cpu")).find(|n| {
        n.property("reg")
            .and_then(big_endian)
            .is_some_and(|reg| reg & 0xff_ffff == cpu)
    });
    let Some(node) = node else {
        return CpuStart::Psci;
    };
    let spin = node
        .property("enable-method")
        .is_some_and(|m| m.strip_suffix(&[0]).unwrap_or(m) == b"spin-table");
    match node.property("cpu-release-addr").and_then(big_endian) {
        Some(release) if spin => CpuStart::SpinTable { release },
        _ => CpuStart::Psci,
    }
}

/// A one- or two-cell big-endian value.
fn big_endian(bytes: &[u8]) -> Option<u64> {
    match bytes.len() {
        4 => Some(u32::from_be_bytes(bytes.try_into().ok()?).into()),
        8 => Some(u64::from_be_bytes(bytes.try_into().ok()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fdt::FdtWriter;

    fn tree(buf: &mut [u8], spin: bool) -> usize {
        let mut w = FdtWriter::new(buf);
        w.begin_node("");
        w.begin_node("cpus");
        w.prop_cells("#address-cells", &[1]);
        w.prop_cells("#size-cells", &[0]);
        for (i, name) in ["cpu@0", "cpu@1"].iter().enumerate() {
            w.begin_node(name);
            w.prop_str("device_type", "cpu");
            w.prop_cells("reg", &[i as u32]);
            if spin {
                w.prop_str("enable-method", "spin-table");
                w.prop_u64s("cpu-release-addr", &[0xd8 + 8 * i as u64]);
            } else {
                w.prop_str("enable-method", "psci");
            }
            w.end_node();
        }
        w.end_node();
        w.end_node();
        w.finish().unwrap()
    }

    #[test]
    fn a_raspberry_pi_parks_its_cores_in_a_spin_table() {
        let mut buf = [0u8; 1024];
        let n = tree(&mut buf, true);
        let t = FdtReader::new(&buf[..n]).unwrap();
        assert_eq!(cpu_start(&t, 1), CpuStart::SpinTable { release: 0xe0 });
        assert_eq!(cpu_start(&t, 5), CpuStart::Psci, "no such CPU");
    }

    #[test]
    fn qemu_starts_its_cores_through_psci() {
        let mut buf = [0u8; 1024];
        let n = tree(&mut buf, false);
        let t = FdtReader::new(&buf[..n]).unwrap();
        assert_eq!(cpu_start(&t, 1), CpuStart::Psci);
    }
}
