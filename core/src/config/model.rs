//! The resolved configuration model shared by the host tool and the hypervisor.

use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

use crate::addr::{GuestPhysAddr, HostPhysAddr};

pub use super::mac::Mac;

/// Bumped whenever the encoded layout changes; the hypervisor refuses any other version.
pub const FORMAT_VERSION: u32 = 11;
pub const MAX_PARTITIONS: usize = 8;
pub const MAX_CPUS: usize = 8;
pub const MAX_REGIONS: usize = 8;
pub const MAX_PORT_RANGES: usize = 8;
pub const NAME_LEN: usize = 16;
pub const ARGS_LEN: usize = 64;
/// The longest kernel command line (`/chosen/bootargs`; Linux arm64's COMMAND_LINE_SIZE).
pub const CMDLINE_LEN: usize = 2048;
/// Room a kernel's device tree gets (Tandem's are a few KiB; Linux allows up to 2 MiB).
pub const DTB_ROOM: u64 = 0x1_0000;
pub const PAGE_SIZE: u64 = 4096;
/// Fault-tolerant pairs a system may have (each takes a log ring in the ledger).
pub const MAX_FT_PAIRS: usize = 2;

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

/// A physical address range.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhysRange {
    pub base: HostPhysAddr,
    pub size: u64,
}

impl PhysRange {
    pub fn end(&self) -> u64 {
        self.base.raw().saturating_add(self.size)
    }
    pub fn overlaps(&self, other: &PhysRange) -> bool {
        self.base.raw() < other.end() && other.base.raw() < self.end()
    }
    pub fn contains(&self, other: &PhysRange) -> bool {
        self.base.raw() <= other.base.raw() && other.end() <= self.end()
    }
}

/// How the board's UARTs are reached.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uart {
    /// A 16550 in x86 port space.
    Pio16550 { port: u16 },
    /// A PL011 at a physical address.
    Pl011 { base: HostPhysAddr },
    /// Not a UART: Arm semihosting writes the bytes to a file the emulator opens on the host
    /// (only for the log, on boards whose machine has a single UART).
    Semihosting,
}

/// How a run ends the machine, so emulators can report a status.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitDevice {
    /// Bochs: magic breakpoint (`xchg bx,bx`) for success, the 0x8900 shutdown port for failure.
    Bochs,
    /// QEMU `isa-debug-exit` at this port.
    QemuDebugExit { port: u16 },
    /// Arm semihosting `SYS_EXIT`.
    Semihosting,
    /// Real hardware: halt.
    Halt,
}

/// Facts about the machine the hypervisor runs on.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Board {
    pub name: String<48>,
    pub arch: Arch,
    pub cpus: u8,
    pub ram: PhysRange,
    /// Where the hypervisor image, its frames and the ledger live; no partition may touch it.
    pub hypervisor: PhysRange,
    /// Frequency of the time source (TSC, generic counter), when the board states it.
    pub timer_hz: Option<u64>,
    pub console: Uart,
    /// The UART that carries the hypervisor's own (defmt) log.
    pub log: Uart,
    pub exit: ExitDevice,
    /// The interrupt controller; aarch64 boards only.
    pub gic: Option<Gic>,
    /// Where each partition sees its virtual PL011; aarch64 boards only (x86 partitions get a
    /// port-mapped 16550).
    pub guest_uart: Option<GuestUart>,
    /// RAM that holds guest images carried beside the hypervisor's own image, from the boot
    /// path or the hypervisor's first steps on to the partitions' loading; no partition and not
    /// the hypervisor may use it.
    pub images: Option<ImageArea>,
    /// What the CPUs can count a guest's progress with: whether a fault-tolerant partition can
    /// have its interrupts delivered between deterministic exits ([`FtDelivery::Precise`]).
    pub instruction_counter: InstructionCounter,
    /// The network interface the hypervisor owns (the log link between boards), if any.
    pub nic: Option<Nic>,
}

/// A network interface the hypervisor drives itself, polled (no partition sees it).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nic {
    /// An Intel 8254x (e1000) on PCI bus 0, found by its vendor and device ID.
    E1000,
    /// A virtio-net device behind one of `slots` virtio-mmio transports, the first at `base`,
    /// each `stride` bytes after the one before (QEMU `virt`: 32 at 0x0a000000, 0x200 apart).
    VirtioMmio {
        base: HostPhysAddr,
        slots: u8,
        stride: u32,
    },
}

/// The board's image area: where the images file (every guest image carried beside the
/// hypervisor, each at its offset) lies once the hypervisor reads it, and how it gets there.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageArea {
    pub range: PhysRange,
    pub carrier: ImageCarrier,
}

/// How the images file reaches the board's image area.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageCarrier {
    /// The boot path writes it at the area's base before the hypervisor starts (QEMU `virt`'s
    /// generic loader). aarch64 boards.
    Loader,
    /// The boot loader loads it as a Multiboot2 boot module (Multiboot2 specification 2.0,
    /// 3.6.6) wherever it chooses; the hypervisor checks where, and moves it to the area's base
    /// before it uses any memory outside its own image. x86_64 boards.
    Multiboot2,
}

/// A board's counter of guest progress, as precise interrupt delivery would need it: a count
/// of the instructions one CPU retired at EL1 and EL0, exact, with an overflow interrupt.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstructionCounter {
    /// No usable counter (Bochs emulates no PMU).
    None,
    /// Exact, but counting every CPU's instructions while this one is at a counted level: QEMU
    /// 7.2 under `-icount` derives PMCCNTR_EL0 and INST_RETIRED from the machine's virtual time,
    /// which the other CPUs advance whenever its round-robin loop runs them.
    MachineWide,
}

/// An aarch64 board's GIC, a GICv3 (Arm IHI 0069) or a GICv2 with the virtualization
/// extensions (Arm IHI 0048B), which the hypervisor owns. Like Bao's platform descriptions, the
/// addresses and interrupt IDs are board data, not code.
///
/// Each partition sees an emulated distributor at the machine's address and its CPU interface
/// where the machine has it (GICv3: emulated redistributors and the virtualized system
/// registers; GICv2: the virtual CPU interface mapped at the GICC address), so its device tree
/// looks like the machine's.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gic {
    /// The distributor (GICD): a 64 KiB frame on GICv3, 4 KiB on GICv2.
    pub distributor: HostPhysAddr,
    /// Where each CPU's interfaces are, which is what tells the versions apart.
    pub cpu: GicCpu,
    /// The virtual CPU interface's maintenance interrupt (a PPI).
    pub maintenance_intid: u32,
    /// The generic timer's PPIs (Arm ARM D11.2.4): EL2 physical (the hypervisor's own), EL1
    /// virtual (forwarded to the guest), EL1 physical and secure physical (named in guests'
    /// device trees).
    pub hyp_timer_intid: u32,
    pub virtual_timer_intid: u32,
    pub physical_timer_intid: u32,
    pub secure_timer_intid: u32,
    /// The PMU's overflow interrupt (a PPI; Arm ARM, The Performance Monitors Extension), if
    /// the board has a PMU it may give partitions ([`Partition::pmu`]): forwarded to the guest of
    /// a partition that has the PMU, and named in its device tree.
    pub pmu_intid: Option<u32>,
}

impl Gic {
    /// The distributor's size, as a partition sees its emulated copy.
    pub fn distributor_size(&self) -> u64 {
        match self.cpu {
            GicCpu::V3 { .. } => crate::devices::vgic::DISTRIBUTOR_SIZE,
            GicCpu::V2 { .. } => crate::devices::vgic::V2_FRAME,
        }
    }
}

/// The per-CPU side of a board's GIC.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum GicCpu {
    /// GICv3: one redistributor per CPU; the CPU interface and the virtual CPU interface are
    /// system registers.
    V3 {
        /// The first CPU's redistributor (GICR: RD_base then SGI_base, 64 KiB each).
        redistributors: HostPhysAddr,
        /// Distance between consecutive CPUs' redistributors (IHI 0069, 9.1: 128 KiB on GICv3,
        /// 256 KiB with the GICv4 VLPI frames).
        redistributor_stride: u64,
    },
    /// GICv2 with the virtualization extensions (IHI 0048B, 5.1): memory-mapped frames, each
    /// banked per CPU at the one address, SGIs and PPIs banked in the distributor.
    V2 {
        /// The CPU interface (GICC), 8 KiB.
        cpu_interface: HostPhysAddr,
        /// The virtual interface control (GICH), 4 KiB: list registers and the hypervisor's
        /// controls.
        hyp_interface: HostPhysAddr,
        /// The virtual CPU interface (GICV), 8 KiB: what a guest sees as its GICC.
        virtual_cpu_interface: HostPhysAddr,
    },
}

/// A partition's virtual PL011: its register window and the interrupt its device tree names.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestUart {
    pub base: GuestPhysAddr,
    pub intid: u32,
}

/// One guest-physical memory region backed by host memory.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRegion {
    pub gpa: GuestPhysAddr,
    pub hpa: HostPhysAddr,
    pub size: u64,
    pub executable: bool,
}

impl MemoryRegion {
    pub fn host_range(&self) -> PhysRange {
        PhysRange {
            base: self.hpa,
            size: self.size,
        }
    }
    pub fn contains_gpa(&self, gpa: GuestPhysAddr, len: u64) -> bool {
        match gpa.offset_from(self.gpa) {
            Some(off) => off.checked_add(len).is_some_and(|end| end <= self.size),
            None => false,
        }
    }
}

/// What a partition's access to a granted port range does.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortMode {
    /// The guest reaches the physical port directly (no exit).
    Passthrough,
    /// Reads return all ones and writes are dropped, without reporting.
    Ignore,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub base: u16,
    pub count: u16,
    pub mode: PortMode,
}

impl PortRange {
    pub fn end(&self) -> u32 {
        u32::from(self.base) + u32::from(self.count)
    }
    pub fn contains(&self, port: u16) -> bool {
        port >= self.base && u32::from(port) < self.end()
    }
}

/// Where a partition's image comes from.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageSource {
    /// Image `index` of the bundle embedded next to the config.
    Bundle { index: u8 },
    /// `offset` bytes into the board's image area ([`Board::images`]), with the CRC-32 (ISO-HDLC)
    /// of its bytes, checked before they are used: the boot path loads them, not the hypervisor.
    Beside { offset: u64, crc: u32 },
}

/// The guest image a partition boots.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Image {
    pub source: ImageSource,
    /// Where its bytes are copied in guest-physical space.
    pub load: GuestPhysAddr,
    pub entry: GuestPhysAddr,
    pub size: u64,
}

/// What a Linux arm64 kernel (`format = "linux"`) is given besides its image, by the boot
/// protocol (Documentation/arch/arm64/booting.rst): the image sits `text_offset` above a 2
/// MiB-aligned base ([`Image::load`]), the device tree above the memory the kernel uses, and the
/// initial RAM disk and command line where `/chosen` says.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelBoot {
    /// The kernel header's `image_size`: the memory it uses from [`Image::load`], BSS included.
    pub image_size: u64,
    /// Where the device tree goes, [`DTB_ROOM`] bytes of it, above `load + image_size`.
    pub dtb: GuestPhysAddr,
    pub initrd: Option<Initrd>,
    /// The command line's bytes: an image of the bundle (at most [`CMDLINE_LEN`]).
    pub cmdline: Option<u8>,
}

/// A kernel's initial RAM disk: its bytes and where they are copied.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Initrd {
    pub source: ImageSource,
    pub gpa: GuestPhysAddr,
    pub size: u64,
}

/// Which copy of a fault-tolerant partition this is.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FtRole {
    /// Runs the guest for real and logs its non-deterministic inputs.
    Primary,
    /// Replays the primary's log on its own copy of the guest, and goes live if the primary fails.
    Backup,
    /// Waits on a spare CPU until the copy that went live re-protects the partition onto it:
    /// then it becomes the backup of a new protection epoch. Its `peer` is the primary.
    Spare,
}

/// How the two copies of a fault-tolerant partition exchange the log.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FtLink {
    /// A shared-memory ring between two CPUs of this board, in the hypervisor's ledger.
    Ring,
    /// Datagrams over the board's NIC to the other copy on another board; a witness on the
    /// network arbitrates. Each board's image holds only its own copy.
    Ethernet(FtNet),
}

/// The boards of a pair linked over Ethernet, by their NICs' addresses. Every board runs the
/// same image: its NIC's address picks its copy's role at boot ([`FtNet::role_of`]).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct FtNet {
    pub primary: Mac,
    pub backup: Mac,
    /// The board the copy that goes live re-protects the partition onto.
    pub spare: Option<Mac>,
    /// The witness, which decides who goes live when the boards lose sight of each other.
    pub witness: Mac,
    /// Names the pair at the witness, which may serve many (a hash of the pair's
    /// configuration).
    pub cluster: u32,
}

impl FtNet {
    /// The role of the copy on the board whose NIC is `mac`, and its peer's address (a spare's:
    /// the backup's); `None` if `mac` is none of the pair's boards.
    pub fn role_of(&self, mac: Mac) -> Option<(FtRole, Mac)> {
        if mac == self.primary {
            Some((FtRole::Primary, self.backup))
        } else if mac == self.backup {
            Some((FtRole::Backup, self.primary))
        } else if Some(mac) == self.spare {
            // The backup is the copy that goes live and re-protects onto the spare.
            Some((FtRole::Spare, self.backup))
        } else {
            None
        }
    }

    /// Every board of the pair, and the witness.
    pub fn stations(&self) -> impl Iterator<Item = Mac> {
        [self.primary, self.backup, self.witness]
            .into_iter()
            .chain(self.spare)
    }
}

/// When a fault-tolerant partition's asynchronous interrupts reach its guest.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FtDelivery {
    /// At the next deterministic exit, on the primary and the backup alike.
    Exit,
    /// As they arrive, at an instruction count the backup stops its guest at: needs a per-CPU
    /// instruction counter, which no board has yet ([`InstructionCounter`]).
    Precise,
}

/// One copy of a fault-tolerant partition. The host tool makes the backup copy (and the spare,
/// if `backup_cpus` names a second CPU) from the partition's `ft` table: same name, image,
/// arguments and guest-physical layout, its own host memory and CPU.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ft {
    pub role: FtRole,
    /// Index of the other copy in [`System::partitions`].
    pub peer: u8,
    /// Index of the pair among the system's fault-tolerant pairs (its ring in the ledger).
    pub pair: u8,
    pub link: FtLink,
    /// The primary logs a heartbeat when it has sent nothing for this long.
    pub heartbeat_us: u32,
    /// Heartbeat periods of silence after which a copy suspects the other has failed.
    pub suspect_after: u8,
    /// When asynchronous interrupts reach the guest.
    pub delivery: FtDelivery,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String<NAME_LEN>,
    /// Physical CPUs, one vCPU each, in vCPU order.
    pub cpus: Vec<u8, MAX_CPUS>,
    pub memory: Vec<MemoryRegion, MAX_REGIONS>,
    pub image: Image,
    pub ports: Vec<PortRange, MAX_PORT_RANGES>,
    /// A free-form argument string the guest reads through the `PARTITION_INFO` hypercall.
    pub args: String<ARGS_LEN>,
    /// Set when the image is a Linux kernel booted by its boot protocol.
    pub kernel: Option<KernelBoot>,
    /// Set on both copies of a fault-tolerant partition.
    pub ft: Option<Ft>,
    /// The partition's UART receives what arrives on the machine's console line from boot, until
    /// the user switches the line to another partition ([`crate::console_switch`]). Set on both
    /// copies of a fault-tolerant partition: the primary takes the bytes and logs them, the
    /// backup replays them until it goes live.
    pub console_input: bool,
    /// What an access to a guest-physical address nothing backs does.
    pub unbacked: Unbacked,
    /// The partition's vCPUs use their CPU's PMU themselves (aarch64): its registers do not
    /// trap, the ID registers and the device tree show it, its overflow interrupt is forwarded,
    /// and counting is prohibited while the CPU is at EL2. Otherwise the PMU is trapped and
    /// hidden. Never for a fault-tolerant partition (the two copies' counts differ).
    pub pmu: bool,
}

/// What a guest's access to a guest-physical address that neither its memory nor an emulated
/// device backs does.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unbacked {
    /// The guest takes a synchronous external abort, as from a bus that answered with an error
    /// (aarch64, as KVM does), and the hypervisor notes it (rate-limited): a kernel probing for
    /// a device survives.
    ExternalAbort,
    /// The partition stops with a memory violation (x86_64 always, aarch64 when asked).
    Stop,
}

impl Partition {
    /// The memory region holding `len` bytes at `gpa`, if one does entirely.
    pub fn region_for(&self, gpa: GuestPhysAddr, len: u64) -> Option<&MemoryRegion> {
        self.memory.iter().find(|r| r.contains_gpa(gpa, len))
    }
    /// The index the guest knows its partition by: a backup or spare copy is its primary.
    pub fn guest_id(&self, index: usize) -> u32 {
        match self.ft {
            Some(Ft {
                role: FtRole::Backup | FtRole::Spare,
                peer,
                link: FtLink::Ring,
                ..
            }) => peer.into(),
            _ => index as u32,
        }
    }
    pub fn memory_size(&self) -> u64 {
        self.memory.iter().map(|r| r.size).sum()
    }
}

/// The whole system: one board, its partitions.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct System {
    pub version: u32,
    pub board: Board,
    pub partitions: Vec<Partition, MAX_PARTITIONS>,
}
