//! Validation errors that name the field and the reason.

use core::fmt;

use super::model::{ImageCarrier, InstructionCounter};

/// Which field of the configuration a problem is about, written the way the TOML file spells it
/// (`partition[1].memory[0].size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub partition: Option<usize>,
    pub list: Option<(&'static str, usize)>,
    pub name: &'static str,
}

impl Field {
    pub const fn board(name: &'static str) -> Self {
        Self {
            partition: None,
            list: None,
            name,
        }
    }
    pub const fn partition(index: usize, name: &'static str) -> Self {
        Self {
            partition: Some(index),
            list: None,
            name,
        }
    }
    pub const fn item(index: usize, list: &'static str, item: usize, name: &'static str) -> Self {
        Self {
            partition: Some(index),
            list: Some((list, item)),
            name,
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.partition {
            None => write!(f, "board.")?,
            Some(i) => write!(f, "partition[{i}].")?,
        }
        if let Some((list, i)) = self.list {
            write!(f, "{list}[{i}].")?;
        }
        write!(f, "{}", self.name)
    }
}

/// Why a field is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    UnsupportedVersion {
        found: u32,
        expected: u32,
    },
    Empty,
    NotPageAligned {
        value: u64,
    },
    OutOfRange {
        value: u64,
        min: u64,
        max: u64,
    },
    Overlaps {
        other_partition: usize,
        other_item: usize,
    },
    OverlapsHypervisor,
    /// Overlaps the board's image area.
    OverlapsImages,
    /// An image carried beside the hypervisor on a board without an image area.
    NoImageArea,
    /// An image carried beside the hypervisor does not fit the board's image area.
    OutsideImageArea {
        end: u64,
        size: u64,
    },
    OutsideRam,
    /// The board's architecture has no boot path that carries the images file this way.
    NoSuchCarrier {
        carrier: ImageCarrier,
    },
    DuplicateName {
        other: usize,
    },
    /// The name the hypervisor's own console lines carry (`[tandem] ...`).
    HypervisorName,
    CpuTaken {
        cpu: u8,
        other: usize,
    },
    NoSuchCpu {
        cpu: u8,
        cpus: u8,
    },
    TooManyVcpus {
        max: usize,
    },
    NotInMemory {
        value: u64,
    },
    Reserved {
        value: u64,
    },
    ArchMismatch,
    BootTablesUnmapped,
    /// An x86_64 partition asked for external aborts on unbacked accesses.
    NoExternalAbort,
    /// A fact this board's architecture needs is not given.
    Missing,
    Misaligned {
        value: u64,
        align: u64,
    },
    /// Two interrupt roles share one INTID.
    SameInterrupt {
        other: &'static str,
    },
    /// A device's register window lies in RAM.
    InsideRam,
    /// Guest memory covers the window of a device the partition sees.
    OverlapsDevice {
        device: &'static str,
    },
    /// Host memory in the PC's first MiB.
    LowMemory,
    /// A port of the machine's own chipset.
    MachinePort {
        port: u16,
        device: &'static str,
    },
    /// Fault tolerance replays one vCPU only.
    FtVcpus,
    /// A passed-through port would let the guest see input the log cannot record.
    FtPassthrough {
        port: u16,
    },
    /// The two copies of a fault-tolerant partition do not name each other or differ.
    FtPeer {
        peer: usize,
    },
    /// Another partition already takes the machine's console input.
    SecondConsoleInput {
        first: usize,
    },
    /// A fault-tolerant pair has more than one spare copy.
    FtSpares {
        pair: u8,
    },
    /// A copy linked over Ethernet on a board without a NIC.
    FtNoNic,
    /// A pair linked over Ethernet names one station twice (boards, witness).
    FtAddresses,
    /// More than one partition is linked over Ethernet (the board's one NIC serves one pair).
    FtEthernetPairs {
        first: usize,
    },
    /// Precise delivery asked of a board without a per-CPU instruction counter.
    FtPrecise {
        counter: InstructionCounter,
    },
    /// The PMU asked for on an architecture that does not give it to partitions.
    PmuArch,
    /// The PMU asked for on a board that names no PMU interrupt.
    NoPmu,
    /// The PMU asked for by a fault-tolerant partition.
    FtPmu,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Problem::UnsupportedVersion { found, expected } => {
                write!(
                    f,
                    "format version {found} is not supported (expected {expected})"
                )
            }
            Problem::Empty => write!(f, "must not be empty"),
            Problem::NotPageAligned { value } => {
                write!(f, "{value:#x} is not a multiple of 4 KiB")
            }
            Problem::OutOfRange { value, min, max } => {
                write!(
                    f,
                    "{value:#x} is outside the allowed range {min:#x}..={max:#x}"
                )
            }
            Problem::Overlaps {
                other_partition,
                other_item,
            } => write!(
                f,
                "overlaps an earlier range (partition[{other_partition}], entry {other_item})"
            ),
            Problem::OverlapsHypervisor => write!(f, "overlaps the hypervisor's own memory"),
            Problem::OverlapsImages => write!(
                f,
                "overlaps the board's image area (`images`), which the boot path fills"
            ),
            Problem::NoImageArea => write!(
                f,
                "is carried beside the hypervisor, but the board has no image area (`images`)"
            ),
            Problem::OutsideImageArea { end, size } => write!(
                f,
                "ends {end:#x} bytes into the board's image area, which has {size:#x}"
            ),
            Problem::OutsideRam => write!(f, "is not inside the board's RAM"),
            Problem::NoSuchCarrier {
                carrier: ImageCarrier::Loader,
            } => write!(
                f,
                "\"loader\" needs a boot path that writes the images file at `base`, which PC boot \
                 loaders do not; use \"multiboot2\" (GRUB loads it as a module, the hypervisor \
                 moves it to `base`)"
            ),
            Problem::NoSuchCarrier {
                carrier: ImageCarrier::Multiboot2,
            } => write!(
                f,
                "\"multiboot2\" needs a boot path that passes Multiboot2 modules, which this \
                 architecture's does not; use \"loader\" (QEMU's generic loader writes the file at \
                 `base`)"
            ),
            Problem::DuplicateName { other } => {
                write!(f, "the same name is already used by partition[{other}]")
            }
            Problem::HypervisorName => write!(
                f,
                "`tandem` is the hypervisor's name on the console: its lines could pass for the hypervisor's"
            ),
            Problem::CpuTaken { cpu, other } => {
                write!(f, "CPU {cpu} is already given to partition[{other}]")
            }
            Problem::NoSuchCpu { cpu, cpus } => {
                write!(f, "CPU {cpu} does not exist (the board has {cpus})")
            }
            Problem::TooManyVcpus { max } => {
                write!(
                    f,
                    "this architecture supports at most {max} vCPU(s) per partition"
                )
            }
            Problem::NotInMemory { value } => {
                write!(f, "{value:#x} is not inside the partition's memory")
            }
            Problem::Reserved { value } => {
                write!(f, "{value:#x} is reserved by the hypervisor")
            }
            Problem::ArchMismatch => write!(f, "does not exist on this board's architecture"),
            Problem::NoExternalAbort => write!(
                f,
                "must be \"stop\": x86_64 has no synchronous external abort to give a guest, so an access nothing backs stops the partition"
            ),
            Problem::BootTablesUnmapped => write!(
                f,
                "must contain GPA 0x0..0x7000: x86_64 guests start with boot page tables there"
            ),
            Problem::Missing => write!(f, "must be given on this board's architecture"),
            Problem::Misaligned { value, align } => {
                write!(f, "{value:#x} is not a multiple of {align:#x}")
            }
            Problem::SameInterrupt { other } => {
                write!(f, "is the same interrupt as {other}")
            }
            Problem::InsideRam => write!(f, "lies inside the board's RAM"),
            Problem::OverlapsDevice { device } => {
                write!(f, "overlaps the window of the partition's {device}")
            }
            Problem::LowMemory => write!(
                f,
                "lies below 1 MiB, which the machine keeps (IVT, BIOS data, the AP trampoline \
                 at 0x8000, the VGA hole)"
            ),
            Problem::MachinePort { port, device } => write!(
                f,
                "port {port:#x} belongs to the {device}, which only the hypervisor may reach"
            ),
            Problem::FtVcpus => write!(
                f,
                "a fault-tolerant partition has exactly one vCPU (multi-vCPU replay is not deterministic)"
            ),
            Problem::FtPassthrough { port } => write!(
                f,
                "port {port:#x} is passed through, but a fault-tolerant partition's inputs must all be logged"
            ),
            Problem::FtPeer { peer } => write!(
                f,
                "partition[{peer}] is not this partition's other fault-tolerant copy"
            ),
            Problem::SecondConsoleInput { first } => write!(
                f,
                "partition[{first}] already takes the console input; only one partition can"
            ),
            Problem::FtSpares { pair } => write!(
                f,
                "fault-tolerant pair {pair} has more than one spare copy (one spare is supported)"
            ),
            Problem::FtNoNic => write!(
                f,
                "the link is Ethernet but the board has no NIC (`nic` in its board file)"
            ),
            Problem::FtAddresses => write!(
                f,
                "the boards and the witness must have different MAC addresses"
            ),
            Problem::FtEthernetPairs { first } => write!(
                f,
                "partition[{first}] already uses the board's NIC; one pair per board can be linked over Ethernet"
            ),
            Problem::FtPrecise {
                counter: InstructionCounter::None,
            } => write!(
                f,
                "\"precise\" needs an instruction counter to stop the backup's guest at, and this \
                 board has none; use \"exit\""
            ),
            Problem::FtPrecise {
                counter: InstructionCounter::MachineWide,
            } => write!(
                f,
                "\"precise\" needs an instruction counter of one CPU, and this board's counts \
                 every CPU's instructions (QEMU 7.2 -icount: the PMU follows the machine's virtual \
                 time), so each copy's count would depend on what the other CPUs ran; use \"exit\""
            ),
            Problem::PmuArch => write!(
                f,
                "the PMU is given to partitions on aarch64 only (x86_64 partitions see no \
                 performance monitoring: CPUID hides it and RDPMC exits)"
            ),
            Problem::NoPmu => write!(
                f,
                "the board names no PMU overflow interrupt (`[gic] pmu_intid`), so it has no PMU \
                 to give"
            ),
            Problem::FtPmu => write!(
                f,
                "a fault-tolerant partition cannot use the PMU: its counts differ between the \
                 primary and the backup (nondeterministic), and the log cannot make them agree"
            ),
        }
    }
}

/// A configuration error: the field and what is wrong with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigError {
    pub field: Field,
    pub problem: Problem,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}
