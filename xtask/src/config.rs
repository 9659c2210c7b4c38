//! Board and partition files (TOML) turned into the validated configuration model. Every error
//! names the file, the field and the reason.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tandem_core::addr::{GuestPhysAddr, HostPhysAddr};
use tandem_core::config::{self as model, FORMAT_VERSION, PAGE_SIZE};

use crate::{image_file, root};

/// A configuration error: which file, and what is wrong.
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self.file.strip_prefix(root()).unwrap_or(&self.file);
        write!(f, "{}: {}", shown.display(), self.message)
    }
}

impl std::error::Error for ConfigError {}

fn error(file: &Path, message: impl Into<String>) -> ConfigError {
    ConfigError {
        file: file.to_path_buf(),
        message: message.into(),
    }
}

/// A byte count written as an integer or a string with a K, M or G suffix ("4M").
#[derive(Debug, Clone, Copy)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(Size(n)),
            Raw::Text(s) => parse_size(&s).map(Size).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "`{s}` is not a size (use a number of bytes, or a number with K, M or G)"
                ))
            }),
        }
    }
}

fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, shift) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 10),
        'M' | 'm' => (&s[..s.len() - 1], 20),
        'G' | 'g' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    let n = match digits.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None => digits.parse().ok()?,
    };
    n.checked_mul(1 << shift)
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ArchName {
    X86_64,
    Aarch64,
}

impl From<ArchName> for crate::Arch {
    fn from(a: ArchName) -> Self {
        match a {
            ArchName::X86_64 => crate::Arch::X86_64,
            ArchName::Aarch64 => crate::Arch::Aarch64,
        }
    }
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EmulatorName {
    Bochs,
    Qemu,
    /// Real hardware only: no emulator here models the board (QEMU 7.2 has no Raspberry Pi 4).
    None,
}

#[derive(Deserialize, Debug, Clone, Copy)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum UartFile {
    Uart16550(u16),
    Pl011(u64),
    Semihosting,
}

#[derive(Deserialize, Debug, Clone, Copy)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
enum ExitFile {
    Bochs,
    QemuDebugExit(u16),
    Semihosting,
    Halt,
}

#[derive(Deserialize, Debug, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct RangeFile {
    base: Size,
    size: Size,
}

/// `images = { base, size, carrier }`: the board's image area.
#[derive(Deserialize, Debug, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct ImagesFile {
    base: Size,
    size: Size,
    #[serde(default)]
    carrier: CarrierFile,
}

/// How the images file reaches the image area (see `model::ImageCarrier`).
#[derive(Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum CarrierFile {
    /// The emulator writes it at `base` (QEMU's generic loader).
    #[default]
    Loader,
    /// GRUB loads it as a Multiboot2 module; the hypervisor moves it to `base`.
    Multiboot2,
}

/// An aarch64 board's `[gic]` section: a GICv3 (`version = 3`, the default) names its
/// redistributors, a GICv2 (`version = 2`) its CPU interface, virtual interface control and
/// virtual CPU interface.
#[derive(Deserialize, Debug, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct GicFile {
    version: Option<u8>,
    distributor: Size,
    redistributors: Option<Size>,
    redistributor_stride: Option<Size>,
    cpu_interface: Option<Size>,
    hyp_interface: Option<Size>,
    virtual_cpu_interface: Option<Size>,
    maintenance_intid: u32,
    hyp_timer_intid: u32,
    virtual_timer_intid: u32,
    physical_timer_intid: u32,
    secure_timer_intid: u32,
    /// The PMU's overflow interrupt, on a board whose PMU partitions may use (`pmu = true`).
    pmu_intid: Option<u32>,
}

#[derive(Deserialize, Debug, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct GuestUartFile {
    base: Size,
    intid: u32,
}

/// `boards/<name>/board.toml`: facts about the machine.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct BoardFile {
    pub name: String,
    pub arch: ArchName,
    /// How xtask runs this board when no hardware is attached.
    pub emulator: EmulatorName,
    cpus: u8,
    timer_hz: Option<u64>,
    ram: RangeFile,
    hypervisor: RangeFile,
    console: UartFile,
    log: UartFile,
    exit: ExitFile,
    /// aarch64 boards only: where each partition sees its PL011.
    guest_uart: Option<GuestUartFile>,
    /// aarch64 boards only: the GICv3.
    gic: Option<GicFile>,
    /// RAM that holds the images file (guest images carried beside the hypervisor's own), and
    /// how the file gets there.
    images: Option<ImagesFile>,
    /// What counts a guest's progress per instruction, if anything (see
    /// `model::InstructionCounter`).
    instruction_counter: Option<InstructionCounterFile>,
    /// The network interface the hypervisor owns: `"e1000"` (PCI) or
    /// `{ virtio-mmio = { base, slots, stride } }`.
    nic: Option<NicFile>,
    /// What `cargo xtask flash` writes for this board, if it is real hardware.
    pub flash: Option<FlashFile>,
}

impl BoardFile {
    /// Whether the hypervisor's log leaves on a UART (which a monitor can read), not through
    /// semihosting (which only an emulator has).
    pub fn log_is_uart(&self) -> bool {
        matches!(self.log, UartFile::Uart16550(_) | UartFile::Pl011(_))
    }
}

/// The kind of bootable image a board boots from.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum FlashFile {
    /// GRUB's hybrid ISO (`grub-mkrescue`): a CD image that is also a disk image with an MBR,
    /// so the same file boots from a USB stick, a hard disk or an optical drive.
    GrubHybrid,
    /// A Raspberry Pi's SD card: an MBR with one FAT32 partition holding the firmware,
    /// `config.txt` and the hypervisor as `kernel8.img`.
    RaspberryPiSd,
}

#[derive(Deserialize, Debug, Clone, Copy)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
enum NicFile {
    E1000,
    VirtioMmio { base: Size, slots: u8, stride: Size },
}

#[derive(Deserialize, Debug, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum InstructionCounterFile {
    MachineWide,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
struct RegionFile {
    gpa: Size,
    size: Size,
    hpa: Option<Size>,
    #[serde(default = "yes")]
    executable: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Debug, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum PortModeFile {
    Passthrough,
    Ignore,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
struct PortsFile {
    base: u16,
    count: u16,
    mode: PortModeFile,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct PartitionFile {
    pub name: String,
    cpus: Vec<u8>,
    /// A test guest from `tests/guests/<arch>`, or...
    pub guest: Option<String>,
    /// ...an image from a file.
    image: Option<ImageSpec>,
    /// A Linux kernel's initial RAM disk, relative to the partitions file's folder.
    initrd: Option<PathBuf>,
    /// A Linux kernel's command line (`/chosen/bootargs`).
    cmdline: Option<String>,
    load: Option<Size>,
    entry: Option<Size>,
    #[serde(default)]
    args: String,
    memory: Vec<RegionFile>,
    #[serde(default)]
    ports: Vec<PortsFile>,
    /// Fault tolerance: a backup copy on `backup_cpus[0]`, kept in lockstep over `link`; a spare
    /// on `backup_cpus[1]`, if named, for re-protection after a failover.
    ft: Option<FtFile>,
    /// What an access nothing backs does: `"external-abort"` (aarch64's default) or `"stop"`
    /// (x86_64's only choice).
    unbacked: Option<UnbackedFile>,
    /// The partition uses its CPUs' PMU itself (aarch64, not fault-tolerant, on a board with a
    /// `pmu_intid`); otherwise the PMU is trapped and hidden.
    #[serde(default)]
    pmu: bool,
}

#[derive(Deserialize, Debug, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum UnbackedFile {
    ExternalAbort,
    Stop,
}

/// `image = { path = "...", format = "flat" | "elf" }`; a relative path is resolved against the
/// partitions file's folder.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
struct ImageSpec {
    path: PathBuf,
    format: image_file::Format,
}

#[derive(Deserialize, Debug, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum FtLinkFile {
    Ring,
    Ethernet,
}

#[derive(Deserialize, Debug, Clone, Copy, Default)]
#[serde(rename_all = "snake_case")]
enum FtDeliveryFile {
    #[default]
    Exit,
    Precise,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
struct FtFile {
    /// `link = "ring"`: the backup's CPU, and a spare's.
    #[serde(default)]
    backup_cpus: Vec<u8>,
    link: FtLinkFile,
    /// `link = "ethernet"`: the boards' NIC addresses, primary first, then the backup, then
    /// an optional spare; each board gets an image of its own (`Loaded::for_board`).
    #[serde(default)]
    boards: Vec<String>,
    /// `link = "ethernet"`: the witness's address.
    witness: Option<String>,
    #[serde(default)]
    delivery: FtDeliveryFile,
    #[serde(default = "default_heartbeat_us")]
    heartbeat_us: u32,
    #[serde(default = "default_suspect_after")]
    suspect_after: u8,
}

fn default_heartbeat_us() -> u32 {
    500
}

fn default_suspect_after() -> u8 {
    3
}

/// A partitions file: which board, and what runs on it.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct PartitionsFile {
    pub board: String,
    /// The partition whose UART receives the machine's console line.
    console_input: Option<String>,
    pub partition: Vec<PartitionFile>,
}

/// Where an image in the bundle comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bundled {
    /// A test guest, by name.
    Guest(String),
    /// A file's image, as loaded.
    File(Vec<u8>),
}

/// A loaded configuration, ready to be bundled with its guest images.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub board: BoardFile,
    pub system: model::System,
    /// The images in the bundle, in image-index order.
    pub images: Vec<Bundled>,
    /// The images file for the board's image area (empty if no image goes beside).
    pub beside: Vec<u8>,
    /// The boards of a pair linked over Ethernet, by NIC address (primary, backup, spare);
    /// empty otherwise. Every board runs the same image.
    pub ft_boards: Vec<model::Mac>,
}

/// Where guests are loaded and entered unless the partition says otherwise: 1 MiB on x86_64;
/// 1 MiB into RAM at 1 GiB on aarch64 (as on QEMU `virt`), leaving room for the device tree.
pub fn default_load(arch: crate::Arch) -> u64 {
    match arch {
        crate::Arch::X86_64 => 0x10_0000,
        crate::Arch::Aarch64 => 0x4010_0000,
    }
}
const HPA_ALIGN: u64 = 2 << 20;

fn read_toml<T: serde::de::DeserializeOwned>(file: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| error(file, format!("cannot read the file: {e}")))?;
    toml::from_str(&text).map_err(|e| error(file, e.to_string().trim_end().to_string()))
}

/// Board `name`'s file as a table, with what it `extends` beneath it: a board that differs
/// from another in a few facts (a NIC, more CPUs, another GIC) says only those. Each key it
/// gives replaces the base's whole (a `[gic]` table is restated whole, so no fact of another GIC
/// is left behind); `seen` holds the boards already on the chain, which may not repeat.
fn board_table(name: &str, seen: &mut Vec<String>) -> Result<toml::Table, ConfigError> {
    let file = board_dir(name).join("board.toml");
    if !file.exists() {
        return Err(error(&file, format!("there is no board named `{name}`")));
    }
    if seen.iter().any(|s| s == name) {
        return Err(error(
            &file,
            format!("extends: `{name}` extends itself ({})", seen.join(" -> ")),
        ));
    }
    seen.push(name.to_string());
    let mut table: toml::Table = read_toml(&file)?;
    let Some(base) = table.remove("extends") else {
        return Ok(table);
    };
    let Some(base) = base.as_str() else {
        return Err(error(&file, "extends: must be a board's name"));
    };
    let mut merged = board_table(base, seen).map_err(|e| error(&file, format!("extends: {e}")))?;
    merged.extend(table);
    Ok(merged)
}

pub fn board_dir(board: &str) -> PathBuf {
    root().join("boards").join(board)
}

pub fn load_board(name: &str) -> Result<BoardFile, ConfigError> {
    let file = board_dir(name).join("board.toml");
    let table = board_table(name, &mut Vec::new())?;
    let board: BoardFile = table
        .try_into()
        .map_err(|e: toml::de::Error| error(&file, e.to_string().trim_end().to_string()))?;
    if board.name != name {
        return Err(error(
            &file,
            format!(
                "name: `{}` does not match the board's folder `{name}`",
                board.name
            ),
        ));
    }
    Ok(board)
}

fn heapless_string<const N: usize>(
    file: &Path,
    field: &str,
    s: &str,
) -> Result<heapless::String<N>, ConfigError> {
    s.try_into()
        .map_err(|_| error(file, format!("{field}: `{s}` is longer than {N} bytes")))
}

/// The per-CPU side of board file `file`'s `[gic]`: the fields of its version, all of them,
/// and none of the other version's.
fn gic_cpu(file: &Path, g: &GicFile) -> Result<model::GicCpu, ConfigError> {
    let need = |name: &str, v: Option<Size>, version: u8| {
        v.map(|s| s.0).ok_or_else(|| {
            error(
                file,
                format!("board.gic.{name}: missing (a GICv{version} must name it)"),
            )
        })
    };
    let refuse = |fields: &[(&str, Option<Size>)], version: u8| match fields
        .iter()
        .find(|(_, v)| v.is_some())
    {
        Some((name, _)) => Err(error(
            file,
            format!("board.gic.{name}: not part of a GICv{version} (see `version`)"),
        )),
        None => Ok(()),
    };
    match g.version.unwrap_or(3) {
        3 => {
            refuse(
                &[
                    ("cpu_interface", g.cpu_interface),
                    ("hyp_interface", g.hyp_interface),
                    ("virtual_cpu_interface", g.virtual_cpu_interface),
                ],
                3,
            )?;
            Ok(model::GicCpu::V3 {
                redistributors: HostPhysAddr::new(need("redistributors", g.redistributors, 3)?),
                redistributor_stride: need("redistributor_stride", g.redistributor_stride, 3)?,
            })
        }
        2 => {
            refuse(
                &[
                    ("redistributors", g.redistributors),
                    ("redistributor_stride", g.redistributor_stride),
                ],
                2,
            )?;
            Ok(model::GicCpu::V2 {
                cpu_interface: HostPhysAddr::new(need("cpu_interface", g.cpu_interface, 2)?),
                hyp_interface: HostPhysAddr::new(need("hyp_interface", g.hyp_interface, 2)?),
                virtual_cpu_interface: HostPhysAddr::new(need(
                    "virtual_cpu_interface",
                    g.virtual_cpu_interface,
                    2,
                )?),
            })
        }
        other => Err(error(
            file,
            format!("board.gic.version: {other} is not a GIC version Tandem drives (2 or 3)"),
        )),
    }
}

/// Loads a partitions file, resolves defaults (host addresses, image placement) and validates
/// the result with the same rules the hypervisor applies at boot; with `board`, on that board
/// instead of the one `file` names.
pub fn load_on(
    file: &Path,
    board: Option<&str>,
    image_sizes: impl Fn(&str) -> Option<u64>,
) -> Result<Loaded, ConfigError> {
    let mut parts: PartitionsFile = read_toml(file)?;
    if let Some(board) = board {
        parts.board = board.to_string();
    }
    let board = load_board(&parts.board).map_err(|e| error(file, format!("board: {e}")))?;
    resolve(file, &parts, board, image_sizes)
}

/// The board a partitions file names.
pub fn board_of(file: &Path) -> Result<BoardFile, ConfigError> {
    let parts: PartitionsFile = read_toml(file)?;
    load_board(&parts.board).map_err(|e| error(file, format!("board: {e}")))
}

/// The physical span `[start, end)` the loadable segments of a hypervisor ELF cover (linked
/// identity-mapped, so virtual and physical addresses agree).
pub fn image_span(elf: &[u8]) -> Option<(u64, u64)> {
    use object::{Object, ObjectSegment};
    let file = object::File::parse(elf).ok()?;
    let spans = file
        .segments()
        .filter(|s| s.size() > 0)
        .map(|s| (s.address(), s.address().saturating_add(s.size())));
    spans.reduce(|(a, b), (c, d)| (a.min(c), b.max(d)))
}

/// The board's `hypervisor` range must start where the image is linked and hold all of it: the
/// image is not relocatable, so a range elsewhere would leave the real image's memory to be
/// handed to partitions, and partitions' memory to be overwritten by the loader.
pub fn check_placement(board: &BoardFile, (start, end): (u64, u64)) -> Result<(), ConfigError> {
    let file = board_dir(&board.name).join("board.toml");
    let (base, size) = (board.hypervisor.base.0, board.hypervisor.size.0);
    if base != start {
        return Err(error(
            &file,
            format!(
                "board.hypervisor.base: {base:#x} is not where the image is linked ({start:#x})"
            ),
        ));
    }
    if end > base.saturating_add(size) {
        return Err(error(
            &file,
            format!(
                "board.hypervisor.size: {size:#x} does not hold the image ({:#x} bytes)",
                end - start
            ),
        ));
    }
    Ok(())
}

/// Turns `board` and `parts` into the validated model; errors name `file`.
fn resolve(
    file: &Path,
    parts: &PartitionsFile,
    board: BoardFile,
    image_sizes: impl Fn(&str) -> Option<u64>,
) -> Result<Loaded, ConfigError> {
    let b = &board;
    let uart = |u: UartFile| match u {
        UartFile::Uart16550(port) => model::Uart::Pio16550 { port },
        UartFile::Pl011(base) => model::Uart::Pl011 {
            base: HostPhysAddr::new(base),
        },
        UartFile::Semihosting => model::Uart::Semihosting,
    };
    let board_model = model::Board {
        name: heapless_string(file, "board", &b.name)?,
        arch: match b.arch {
            ArchName::X86_64 => model::Arch::X86_64,
            ArchName::Aarch64 => model::Arch::Aarch64,
        },
        cpus: b.cpus,
        ram: model::PhysRange {
            base: HostPhysAddr::new(b.ram.base.0),
            size: b.ram.size.0,
        },
        hypervisor: model::PhysRange {
            base: HostPhysAddr::new(b.hypervisor.base.0),
            size: b.hypervisor.size.0,
        },
        timer_hz: b.timer_hz,
        console: uart(b.console),
        log: uart(b.log),
        exit: match b.exit {
            ExitFile::Bochs => model::ExitDevice::Bochs,
            ExitFile::QemuDebugExit(port) => model::ExitDevice::QemuDebugExit { port },
            ExitFile::Semihosting => model::ExitDevice::Semihosting,
            ExitFile::Halt => model::ExitDevice::Halt,
        },
        gic: b
            .gic
            .map(|g| {
                Ok::<_, ConfigError>(model::Gic {
                    distributor: HostPhysAddr::new(g.distributor.0),
                    cpu: gic_cpu(file, &g)?,
                    maintenance_intid: g.maintenance_intid,
                    hyp_timer_intid: g.hyp_timer_intid,
                    virtual_timer_intid: g.virtual_timer_intid,
                    physical_timer_intid: g.physical_timer_intid,
                    secure_timer_intid: g.secure_timer_intid,
                    pmu_intid: g.pmu_intid,
                })
            })
            .transpose()?,
        guest_uart: b.guest_uart.map(|u| model::GuestUart {
            base: GuestPhysAddr::new(u.base.0),
            intid: u.intid,
        }),
        images: b.images.map(|r| model::ImageArea {
            range: model::PhysRange {
                base: HostPhysAddr::new(r.base.0),
                size: r.size.0,
            },
            carrier: match r.carrier {
                CarrierFile::Loader => model::ImageCarrier::Loader,
                CarrierFile::Multiboot2 => model::ImageCarrier::Multiboot2,
            },
        }),
        instruction_counter: match b.instruction_counter {
            None => model::InstructionCounter::None,
            Some(InstructionCounterFile::MachineWide) => model::InstructionCounter::MachineWide,
        },
        nic: match b.nic {
            None => None,
            Some(NicFile::E1000) => Some(model::Nic::E1000),
            Some(NicFile::VirtioMmio {
                base,
                slots,
                stride,
            }) => Some(model::Nic::VirtioMmio {
                base: HostPhysAddr::new(base.0),
                slots,
                stride: u32::try_from(stride.0)
                    .map_err(|_| error(file, "board.nic.virtio-mmio.stride: larger than 4 GiB"))?,
            }),
        },
    };

    let mut placement = Placement {
        images: Vec::new(),
        beside: Beside::default(),
        area: board_model.images.is_some(),
    };
    let mut partitions = heapless::Vec::new();
    // Host memory for regions without an explicit `hpa`, right above the hypervisor.
    let mut next_hpa = (b.hypervisor.base.0 + b.hypervisor.size.0).next_multiple_of(HPA_ALIGN);
    for (i, p) in parts.partition.iter().enumerate() {
        let field = |name: &str| format!("partition[{i}].{name}");
        if let Some(line) = p
            .cmdline
            .as_ref()
            .filter(|line| line.len() > model::CMDLINE_LEN || line.contains('\0'))
        {
            return Err(error(
                file,
                format!(
                    "{}: {} bytes; a command line has at most {} and no NUL",
                    field("cmdline"),
                    line.len(),
                    model::CMDLINE_LEN
                ),
            ));
        }
        let resolved = partition_image(file, i, p, b.arch.into(), &image_sizes)?;
        let (size, load, entry) = (resolved.size, resolved.load, resolved.entry);
        let kernel = kernel_boot(file, i, p, &resolved, &mut placement)?;
        let source = placement.place(resolved.bundled);
        let mut memory = heapless::Vec::new();
        for (j, r) in p.memory.iter().enumerate() {
            let hpa = match r.hpa {
                Some(h) => h.0,
                None => {
                    let hpa = next_hpa;
                    next_hpa =
                        (hpa + r.size.0.next_multiple_of(PAGE_SIZE)).next_multiple_of(HPA_ALIGN);
                    hpa
                }
            };
            memory
                .push(model::MemoryRegion {
                    gpa: GuestPhysAddr::new(r.gpa.0),
                    hpa: HostPhysAddr::new(hpa),
                    size: r.size.0,
                    executable: r.executable,
                })
                .map_err(|_| {
                    error(
                        file,
                        format!(
                            "{}: more than {} regions",
                            field(&format!("memory[{j}]")),
                            model::MAX_REGIONS
                        ),
                    )
                })?;
        }
        let mut ports = heapless::Vec::new();
        for r in &p.ports {
            ports
                .push(model::PortRange {
                    base: r.base,
                    count: r.count,
                    mode: match r.mode {
                        PortModeFile::Passthrough => model::PortMode::Passthrough,
                        PortModeFile::Ignore => model::PortMode::Ignore,
                    },
                })
                .map_err(|_| {
                    error(
                        file,
                        format!(
                            "{}: more than {} ranges",
                            field("ports"),
                            model::MAX_PORT_RANGES
                        ),
                    )
                })?;
        }
        let partition = model::Partition {
            name: heapless_string(file, &field("name"), &p.name)?,
            cpus: heapless::Vec::from_slice(&p.cpus).map_err(|_| {
                error(
                    file,
                    format!("{}: more than {} CPUs", field("cpus"), model::MAX_CPUS),
                )
            })?,
            memory,
            image: model::Image {
                source,
                load: GuestPhysAddr::new(load),
                entry: GuestPhysAddr::new(entry),
                size,
            },
            ports,
            args: heapless_string(file, &field("args"), &p.args)?,
            kernel,
            ft: None,
            console_input: parts.console_input.as_deref() == Some(p.name.as_str()),
            unbacked: match (p.unbacked, b.arch) {
                (Some(UnbackedFile::ExternalAbort), _) | (None, ArchName::Aarch64) => {
                    model::Unbacked::ExternalAbort
                }
                (Some(UnbackedFile::Stop), _) | (None, ArchName::X86_64) => model::Unbacked::Stop,
            },
            pmu: p.pmu,
        };
        partitions.push(partition).map_err(|_| {
            error(
                file,
                format!("partition: more than {} partitions", model::MAX_PARTITIONS),
            )
        })?;
    }
    if let Some(name) = &parts.console_input
        && !partitions.iter().any(|p| p.console_input)
    {
        return Err(error(
            file,
            format!("console_input: no partition is named `{name}`"),
        ));
    }
    let ft_boards = add_backups(file, parts, &mut partitions, &mut next_hpa)?;
    let system = model::System {
        version: FORMAT_VERSION,
        board: board_model,
        partitions,
    };
    model::validate(&system).map_err(|e| error(file, e.to_string()))?;
    Ok(Loaded {
        board,
        system,
        images: placement.images,
        beside: placement.beside.bytes,
        ft_boards,
    })
}

/// Where each image goes: the bundle inside the hypervisor's image, or the images file beside it
/// (files, on a board with an image area).
struct Placement {
    images: Vec<Bundled>,
    beside: Beside,
    area: bool,
}

impl Placement {
    fn place(&mut self, bundled: Bundled) -> model::ImageSource {
        match bundled {
            Bundled::File(bytes) if self.area => self.beside.place(bytes),
            bundled => model::ImageSource::Bundle {
                index: self.in_bundle(bundled),
            },
        }
    }

    /// The bundle's index of `bundled`, added once.
    fn in_bundle(&mut self, bundled: Bundled) -> u8 {
        match self.images.iter().position(|g| *g == bundled) {
            Some(index) => index as u8,
            None => {
                self.images.push(bundled);
                (self.images.len() - 1) as u8
            }
        }
    }
}

/// For a Linux kernel, where its device tree and initial RAM disk go (each 2 MiB-aligned above
/// what comes before it) and its command line; `None` for any other image, which may not name
/// an initrd or a command line.
fn kernel_boot(
    file: &Path,
    i: usize,
    p: &PartitionFile,
    resolved: &Resolved,
    placement: &mut Placement,
) -> Result<Option<model::KernelBoot>, ConfigError> {
    const BLOCK: u64 = 2 << 20;
    let field = |name: &str| format!("partition[{i}].{name}");
    let Some(image_size) = resolved.image_size else {
        for (name, given) in [
            ("initrd", p.initrd.is_some()),
            ("cmdline", p.cmdline.is_some()),
        ] {
            if given {
                return Err(error(
                    file,
                    format!(
                        "{}: only a Linux kernel (`format = \"linux\"`) takes one",
                        field(name)
                    ),
                ));
            }
        }
        return Ok(None);
    };
    let dtb = (resolved.load + image_size).next_multiple_of(BLOCK);
    let initrd = match &p.initrd {
        Some(path) => {
            let folder = file.parent().unwrap_or(Path::new("."));
            let bytes = image_file::read_bytes(&folder.join(path))
                .map_err(|why| error(file, format!("{}: {why}", field("initrd"))))?;
            let size = bytes.len() as u64;
            Some(model::Initrd {
                source: placement.place(Bundled::File(bytes)),
                gpa: GuestPhysAddr::new((dtb + model::DTB_ROOM).next_multiple_of(BLOCK)),
                size,
            })
        }
        None => None,
    };
    let cmdline = p
        .cmdline
        .as_ref()
        .map(|line| placement.in_bundle(Bundled::File(line.clone().into_bytes())));
    Ok(Some(model::KernelBoot {
        image_size,
        dtb: GuestPhysAddr::new(dtb),
        initrd,
        cmdline,
    }))
}

/// The images file the boot path loads into the board's image area: each image at a 4 KiB
/// boundary, once however many partitions name it.
#[derive(Default)]
struct Beside {
    bytes: Vec<u8>,
    placed: Vec<(Vec<u8>, model::ImageSource)>,
}

impl Beside {
    fn place(&mut self, image: Vec<u8>) -> model::ImageSource {
        if let Some((_, source)) = self.placed.iter().find(|(bytes, _)| *bytes == image) {
            return *source;
        }
        let offset = self.bytes.len().next_multiple_of(PAGE_SIZE as usize);
        self.bytes.resize(offset, 0);
        self.bytes.extend_from_slice(&image);
        let source = model::ImageSource::Beside {
            offset: offset as u64,
            crc: tandem_core::bundle::crc32(&image),
        };
        self.placed.push((image, source));
        source
    }
}

/// A partition's image as resolved from its file or test guest.
struct Resolved {
    bundled: Bundled,
    size: u64,
    load: u64,
    entry: u64,
    /// A Linux kernel's `image_size` (the memory it uses from `load`).
    image_size: Option<u64>,
}

/// Partition `i`'s image (a test guest's or a file's), with its size, load address and entry.
fn partition_image(
    file: &Path,
    i: usize,
    p: &PartitionFile,
    arch: crate::Arch,
    image_sizes: &impl Fn(&str) -> Option<u64>,
) -> Result<Resolved, ConfigError> {
    match (&p.guest, &p.image) {
        (Some(guest), None) => {
            let size = image_sizes(guest).ok_or_else(|| {
                error(
                    file,
                    format!("partition[{i}].guest: there is no test guest named `{guest}`"),
                )
            })?;
            let load = p.load.map_or(default_load(arch), |s| s.0);
            Ok(Resolved {
                bundled: Bundled::Guest(guest.clone()),
                size,
                load,
                entry: p.entry.map_or(load, |s| s.0),
                image_size: None,
            })
        }
        (None, Some(spec)) => {
            let folder = file.parent().unwrap_or(Path::new("."));
            let requested = image_file::Requested {
                load: p.load.map(|s| s.0),
                entry: p.entry.map(|s| s.0),
                memory_base: p.memory.first().map_or(0, |r| r.gpa.0),
            };
            let image = image_file::read(&folder.join(&spec.path), spec.format, arch, requested)
                .map_err(|why| error(file, format!("partition[{i}].image: {why}")))?;
            Ok(Resolved {
                size: image.bytes.len() as u64,
                bundled: Bundled::File(image.bytes),
                load: image.load,
                entry: image.entry,
                image_size: image.image_size,
            })
        }
        (Some(_), Some(_)) => Err(error(
            file,
            format!("partition[{i}]: names both a test `guest` and an `image`; give one"),
        )),
        (None, None) => Err(error(
            file,
            format!("partition[{i}]: names neither a test `guest` nor an `image` to run"),
        )),
    }
}

/// Appends the backup copy of every partition with an `ft` table: the same guest on its backup
/// CPU, in host memory of its own (above everything else), the two copies naming each other. A
/// second `backup_cpus` entry is a spare: a third copy, in host memory of its own too, that waits
/// there until the copy that goes live re-protects the partition onto it.
fn add_backups(
    file: &Path,
    parts: &PartitionsFile,
    partitions: &mut heapless::Vec<model::Partition, { model::MAX_PARTITIONS }>,
    next_hpa: &mut u64,
) -> Result<Vec<model::Mac>, ConfigError> {
    let mut ft_boards = Vec::new();
    let pairs = parts
        .partition
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((i, p.ft.as_ref()?)));
    for (pair, (i, ft)) in pairs.enumerate() {
        let field = |name: &str| format!("partition[{i}].ft.{name}");
        if let FtLinkFile::Ethernet = ft.link {
            let (net, boards) = ethernet(file, &parts.partition[i], ft, &field)?;
            partitions[i].ft = Some(model::Ft {
                role: model::FtRole::Primary,
                peer: i as u8,
                pair: pair as u8,
                link: model::FtLink::Ethernet(net),
                heartbeat_us: ft.heartbeat_us,
                suspect_after: ft.suspect_after,
                delivery: delivery(ft.delivery),
            });
            ft_boards = boards;
            continue;
        }
        let refuse = |why: String| Err(error(file, format!("{}: {why}", field("backup_cpus"))));
        let (cpu, spare) = match ft.backup_cpus.as_slice() {
            [] => return refuse("must name the backup's CPU".into()),
            [cpu] => (*cpu, None),
            [cpu, spare] => (*cpu, Some(*spare)),
            _ => {
                return refuse(
                    "names the backup's CPU and at most one spare (one re-protection is supported)"
                        .into(),
                );
            }
        };
        for c in core::iter::once(cpu).chain(spare) {
            if let Some(other) = partitions.iter().position(|q| q.cpus.contains(&c)) {
                return refuse(format!("CPU {c} is already given to partition[{other}]"));
            }
        }
        if spare == Some(cpu) {
            return refuse(format!("CPU {cpu} is named twice"));
        }
        if pair >= model::MAX_FT_PAIRS {
            return Err(error(
                file,
                format!(
                    "{}: more than {} fault-tolerant partitions",
                    field("link"),
                    model::MAX_FT_PAIRS
                ),
            ));
        }
        let backup_index = partitions.len();
        let copy = |role, peer| model::Ft {
            role,
            peer,
            pair: pair as u8,
            link: model::FtLink::Ring,
            heartbeat_us: ft.heartbeat_us,
            suspect_after: ft.suspect_after,
            delivery: delivery(ft.delivery),
        };
        let mut copy_on = |cpu: u8, ft: model::Ft| {
            let mut copy = partitions[i].clone();
            copy.cpus = heapless::Vec::from_slice(&[cpu]).expect("one CPU fits");
            for region in copy.memory.iter_mut() {
                region.hpa = HostPhysAddr::new(*next_hpa);
                *next_hpa = (*next_hpa + region.size.next_multiple_of(PAGE_SIZE))
                    .next_multiple_of(HPA_ALIGN);
            }
            copy.ft = Some(ft);
            copy
        };
        let backup = copy_on(cpu, copy(model::FtRole::Backup, i as u8));
        let spare = spare.map(|cpu| copy_on(cpu, copy(model::FtRole::Spare, i as u8)));
        partitions[i].ft = Some(copy(model::FtRole::Primary, backup_index as u8));
        for extra in core::iter::once(backup).chain(spare) {
            partitions.push(extra).map_err(|_| {
                error(
                    file,
                    format!(
                        "{}: the backup copies make more than {} partitions",
                        field("backup_cpus"),
                        model::MAX_PARTITIONS
                    ),
                )
            })?;
        }
    }
    Ok(ft_boards)
}

fn delivery(file: FtDeliveryFile) -> model::FtDelivery {
    match file {
        FtDeliveryFile::Exit => model::FtDelivery::Exit,
        FtDeliveryFile::Precise => model::FtDelivery::Precise,
    }
}

/// A pair across boards: its addresses from `boards` and `witness` (`backup_cpus` has no
/// meaning there: each board runs its copy on the partition's own CPUs).
fn ethernet(
    file: &Path,
    partition: &PartitionFile,
    ft: &FtFile,
    field: &dyn Fn(&str) -> String,
) -> Result<(model::FtNet, Vec<model::Mac>), ConfigError> {
    let refuse = |name: &str, why: &str| Err(error(file, format!("{}: {why}", field(name))));
    if !ft.backup_cpus.is_empty() {
        return refuse(
            "backup_cpus",
            "a pair linked over Ethernet runs each copy on its own board; name the boards in `boards`",
        );
    }
    let mac = |name: &str, text: &str| {
        model::Mac::parse(text).ok_or_else(|| {
            error(
                file,
                format!(
                    "{}: `{text}` is not a MAC address (xx:xx:xx:xx:xx:xx)",
                    field(name)
                ),
            )
        })
    };
    if !(2..=3).contains(&ft.boards.len()) {
        return refuse(
            "boards",
            "names the primary's and the backup's board, and at most one spare's",
        );
    }
    let boards = ft
        .boards
        .iter()
        .enumerate()
        .map(|(k, text)| mac(&format!("boards[{k}]"), text))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(witness) = &ft.witness else {
        return refuse(
            "witness",
            "a pair across boards needs a witness to decide who goes live",
        );
    };
    let witness = mac("witness", witness)?;
    let mut all = boards.clone();
    all.push(witness);
    all.sort_by_key(|m| m.0);
    if all.windows(2).any(|w| w[0] == w[1]) {
        return refuse(
            "boards",
            "the boards and the witness need different addresses",
        );
    }
    // FNV-1a over what identifies the pair, so every board's image names the same cluster.
    let mut cluster: u32 = 0x811c_9dc5;
    let identity = boards.iter().chain([&witness]).flat_map(|m| m.0);
    for byte in partition.name.bytes().chain(identity) {
        cluster = (cluster ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    let net = model::FtNet {
        primary: boards[0],
        backup: boards[1],
        spare: boards.get(2).copied(),
        witness,
        cluster,
    };
    Ok((net, boards))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(name: &str) -> Option<u64> {
        ["hello", "timer", "hostile", "ports", "bench"]
            .contains(&name)
            .then_some(0x4000)
    }

    #[test]
    fn the_hypervisor_range_must_be_where_the_image_is_linked() {
        let board = load_board("bochs-x86_64").unwrap();
        assert!(check_placement(&board, (0x10_0000, 0x20_0000)).is_ok());
        let moved = check_placement(&board, (0x20_0000, 0x30_0000))
            .unwrap_err()
            .to_string();
        assert_eq!(
            moved,
            "boards/bochs-x86_64/board.toml: board.hypervisor.base: 0x100000 is not where the \
             image is linked (0x200000)"
        );
        let big = check_placement(&board, (0x10_0000, 0x200_0000))
            .unwrap_err()
            .to_string();
        assert!(big.contains("board.hypervisor.size: 0xf00000 does not hold the image"));
    }

    #[test]
    fn sizes_accept_suffixes_and_hex() {
        assert_eq!(parse_size("4M"), Some(4 << 20));
        assert_eq!(parse_size("0x1000"), Some(0x1000));
        assert_eq!(parse_size("16k"), Some(16 << 10));
        assert_eq!(parse_size("lots"), None);
    }

    #[test]
    fn board_demo_configs_are_valid() {
        let boards = std::fs::read_dir(root().join("boards")).unwrap();
        for board in boards.map(|e| e.unwrap().path()) {
            // The folders that hold no board file are the hypervisor's crates.
            if !board.join("board.toml").exists() {
                continue;
            }
            let name = board.file_name().unwrap().to_string_lossy().into_owned();
            load_board(&name).unwrap_or_else(|e| panic!("{e}"));
            let file = board.join("partitions.toml");
            if !file.exists() {
                continue;
            }
            let loaded = load_on(&file, None, sizes).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(loaded.system.partitions.len(), 2);
            assert_ne!(
                loaded.system.partitions[0].memory[0].hpa,
                loaded.system.partitions[1].memory[0].hpa
            );
        }
    }

    #[test]
    fn a_board_that_extends_another_replaces_whole_keys() {
        let twin = load_board("qemu-virt-aarch64-smp3-gicv2").unwrap();
        assert_eq!(twin.cpus, 3, "its own key");
        assert_eq!(
            twin.ram.base.0, 0x4000_0000,
            "from qemu-virt-aarch64, two boards down"
        );
        let gic = twin.gic.unwrap();
        assert_eq!(gic.version, Some(2));
        assert!(gic.redistributors.is_none(), "no GICv3 fact is left behind");
    }

    #[test]
    fn a_second_backup_cpu_is_a_spare_copy_in_memory_of_its_own() {
        let file = root().join("tests/scenarios/aarch64/ft-reprotect.toml");
        let system = load_on(&file, None, sizes)
            .unwrap_or_else(|e| panic!("{e}"))
            .system;
        let copies: Vec<_> = system
            .partitions
            .iter()
            .filter(|p| p.name == "pair")
            .map(|p| {
                (
                    p.cpus[0],
                    p.ft.unwrap().role,
                    p.ft.unwrap().peer,
                    p.memory[0].hpa,
                )
            })
            .collect();
        assert_eq!(copies.len(), 3);
        assert_eq!(
            copies.iter().map(|c| (c.0, c.1, c.2)).collect::<Vec<_>>(),
            [
                (0, model::FtRole::Primary, 2),
                (2, model::FtRole::Backup, 0),
                (3, model::FtRole::Spare, 0)
            ]
        );
        assert!(copies[0].3 != copies[1].3 && copies[1].3 != copies[2].3);
    }

    /// Every file in `tests/configs/bad` starts with `# expect: <part of the message>`.
    #[test]
    fn malformed_configs_are_rejected_with_file_field_and_reason() {
        let dir = root().join("tests/configs/bad");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let expected = text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("# expect: "))
                .unwrap_or_else(|| panic!("{} has no `# expect:` line", path.display()));
            let err = load_on(&path, None, sizes)
                .expect_err("must be rejected")
                .to_string();
            let file_name = path.file_name().unwrap().to_str().unwrap();
            assert!(err.starts_with("tests/configs/bad/"), "{err}");
            assert!(err.contains(file_name), "{err}");
            assert!(
                err.contains(expected),
                "{file_name}: `{err}` lacks `{expected}`"
            );
            checked += 1;
        }
        assert!(checked >= 5, "only {checked} malformed configs");
    }

    /// Every file in `tests/configs/bad-boards` is a board file that starts with
    /// `# expect: <part of the message>`; each is tried with the aarch64 demo's partitions.
    #[test]
    fn malformed_boards_are_rejected_with_file_field_and_reason() {
        let parts: PartitionsFile =
            read_toml(&board_dir("qemu-virt-aarch64").join("partitions.toml")).unwrap();
        let mut checked = 0;
        for entry in std::fs::read_dir(root().join("tests/configs/bad-boards")).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let expected = text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("# expect: "))
                .unwrap_or_else(|| panic!("{} has no `# expect:` line", path.display()));
            let err = read_toml(&path)
                .and_then(|board| resolve(&path, &parts, board, sizes))
                .expect_err("must be rejected")
                .to_string();
            assert!(err.starts_with("tests/configs/bad-boards/"), "{err}");
            assert!(err.contains(expected), "`{err}` lacks `{expected}`");
            checked += 1;
        }
        assert!(checked >= 2, "only {checked} malformed boards");
    }
}
