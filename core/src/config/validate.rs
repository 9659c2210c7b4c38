//! The rules a configuration must keep. Run by the host tool before embedding a config and by the
//! hypervisor on the embedded copy before it touches any hardware.

use super::error::{ConfigError, Field, Problem};
use super::model::*;
use super::pc::{LOW_MEMORY_END, MACHINE_PORTS};
use crate::addr::GuestPhysAddr;
use crate::devices::pl011;
use crate::devices::uart16550::{COM1_BASE, COM1_PORTS};
use crate::devices::vgic::{DISTRIBUTOR_SIZE, V2_CPU_INTERFACE_SIZE, V2_FRAME};

/// Guest-physical addresses must stay below 512 GiB: one top-level EPT / stage-2 entry's reach.
pub const MAX_GPA: u64 = 1 << 39;
/// x86_64 guests enter in long mode with boot page tables in these guest-physical pages.
pub const X86_BOOT_TABLES: core::ops::Range<u64> = 0x1000..0x7000;
const X86_MAX_VCPUS: usize = 1;
/// Where an aarch64 board's RAM may lie: what the boot map maps as Normal memory.
const AARCH64_RAM: core::ops::Range<u64> = 0x4000_0000..0xc000_0000;

type Result<T = ()> = core::result::Result<T, ConfigError>;

fn err(field: Field, problem: Problem) -> ConfigError {
    ConfigError { field, problem }
}

/// Checks every rule; returns the first broken one.
pub fn validate(sys: &System) -> Result {
    if sys.version != FORMAT_VERSION {
        return Err(err(
            Field::board("version"),
            Problem::UnsupportedVersion {
                found: sys.version,
                expected: FORMAT_VERSION,
            },
        ));
    }
    validate_board(&sys.board)?;
    if sys.partitions.is_empty() {
        return Err(err(Field::board("partition"), Problem::Empty));
    }
    for (i, p) in sys.partitions.iter().enumerate() {
        validate_partition(sys, i, p)?;
    }
    validate_console_input(sys)
}

/// One partition at most takes the machine's console input (the other copies of a
/// fault-tolerant partition take it with its primary).
fn validate_console_input(sys: &System) -> Result {
    let mut takers = sys
        .partitions
        .iter()
        .enumerate()
        .filter(|(_, p)| p.console_input && p.ft.is_none_or(|ft| ft.role == FtRole::Primary));
    match (takers.next(), takers.next()) {
        (Some((first, _)), Some((second, _))) => Err(err(
            Field::partition(second, "console_input"),
            Problem::SecondConsoleInput { first },
        )),
        _ => Ok(()),
    }
}

fn page_aligned(field: Field, value: u64) -> Result {
    if value.is_multiple_of(PAGE_SIZE) {
        Ok(())
    } else {
        Err(err(field, Problem::NotPageAligned { value }))
    }
}

fn validate_board(b: &Board) -> Result {
    if b.cpus == 0 || usize::from(b.cpus) > MAX_CPUS {
        return Err(err(
            Field::board("cpus"),
            Problem::OutOfRange {
                value: b.cpus.into(),
                min: 1,
                max: MAX_CPUS as u64,
            },
        ));
    }
    page_aligned(Field::board("ram.base"), b.ram.base.raw())?;
    page_aligned(Field::board("ram.size"), b.ram.size)?;
    if b.ram.size == 0 {
        return Err(err(Field::board("ram.size"), Problem::Empty));
    }
    page_aligned(Field::board("hypervisor.base"), b.hypervisor.base.raw())?;
    page_aligned(Field::board("hypervisor.size"), b.hypervisor.size)?;
    if !b.ram.contains(&b.hypervisor) {
        return Err(err(Field::board("hypervisor"), Problem::OutsideRam));
    }
    let uarts_fit = |u: Uart, log: bool| match (b.arch, u) {
        (Arch::X86_64, Uart::Pio16550 { .. }) | (Arch::Aarch64, Uart::Pl011 { .. }) => Ok(()),
        (Arch::Aarch64, Uart::Semihosting) if log => Ok(()),
        _ => Err(Problem::ArchMismatch),
    };
    if let Some(ImageArea {
        range: images,
        carrier,
    }) = b.images
    {
        page_aligned(Field::board("images.base"), images.base.raw())?;
        page_aligned(Field::board("images.size"), images.size)?;
        let carried = matches!(
            (b.arch, carrier),
            (Arch::Aarch64, ImageCarrier::Loader) | (Arch::X86_64, ImageCarrier::Multiboot2)
        );
        if !carried {
            return Err(err(
                Field::board("images.carrier"),
                Problem::NoSuchCarrier { carrier },
            ));
        }
        if !b.ram.contains(&images) {
            return Err(err(Field::board("images"), Problem::OutsideRam));
        }
        if images.overlaps(&b.hypervisor) {
            return Err(err(Field::board("images"), Problem::OverlapsHypervisor));
        }
    }
    uarts_fit(b.console, false).map_err(|p| err(Field::board("console"), p))?;
    uarts_fit(b.log, true).map_err(|p| err(Field::board("log"), p))?;
    match b.arch {
        Arch::X86_64 => {
            if b.gic.is_some() {
                return Err(err(Field::board("gic"), Problem::ArchMismatch));
            }
            if b.guest_uart.is_some() {
                return Err(err(Field::board("guest_uart"), Problem::ArchMismatch));
            }
        }
        Arch::Aarch64 => {
            // The boot map (arch/aarch64 boot.rs) maps RAM as Normal memory from 1 GiB to 3 GiB
            // only: the first and fourth GiB are Device memory.
            let outside = [b.ram.base.raw(), b.ram.end()]
                .into_iter()
                .find(|a| !(AARCH64_RAM.start..=AARCH64_RAM.end).contains(a));
            if let Some(value) = outside {
                return Err(err(
                    Field::board("ram"),
                    Problem::OutOfRange {
                        value,
                        min: AARCH64_RAM.start,
                        max: AARCH64_RAM.end,
                    },
                ));
            }
            let gic = b.gic.ok_or(err(Field::board("gic"), Problem::Missing))?;
            validate_gic(b, &gic)?;
            let uart = b
                .guest_uart
                .ok_or(err(Field::board("guest_uart"), Problem::Missing))?;
            page_aligned(Field::board("guest_uart.base"), uart.base.raw())?;
            // SPIs are INTIDs 32..=1019 (IHI 0069, 2.2.1).
            in_range(Field::board("guest_uart.intid"), uart.intid, 32..=1019)?;
        }
    }
    Ok(())
}

fn in_range(field: Field, value: u32, range: core::ops::RangeInclusive<u32>) -> Result {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(err(
            field,
            Problem::OutOfRange {
                value: value.into(),
                min: (*range.start()).into(),
                max: (*range.end()).into(),
            },
        ))
    }
}

/// A GIC's frames are aligned to their size (GICv3: 64 KiB, IHI 0069 8.11; GICv2: 4 KiB, IHI
/// 0048B 4.1.1) and outside RAM; a redistributor spans two frames (four with GICv4's VLPI
/// frames); the hypervisor's interrupts are distinct PPIs (INTIDs 16..=31, IHI 0069, 2.2.1).
fn validate_gic(b: &Board, gic: &Gic) -> Result {
    let (frame, frames) = match gic.cpu {
        GicCpu::V3 {
            redistributors,
            redistributor_stride: stride,
        } => {
            const FRAME: u64 = 0x1_0000;
            if !stride.is_multiple_of(FRAME) || !(2 * FRAME..=4 * FRAME).contains(&stride) {
                return Err(err(
                    Field::board("gic.redistributor_stride"),
                    Problem::OutOfRange {
                        value: stride,
                        min: 2 * FRAME,
                        max: 4 * FRAME,
                    },
                ));
            }
            (
                FRAME,
                [
                    ("gic.distributor", gic.distributor.raw(), DISTRIBUTOR_SIZE),
                    (
                        "gic.redistributors",
                        redistributors.raw(),
                        stride.saturating_mul(b.cpus.into()),
                    ),
                    ("", 0, 0),
                    ("", 0, 0),
                ],
            )
        }
        GicCpu::V2 {
            cpu_interface,
            hyp_interface,
            virtual_cpu_interface,
        } => (
            V2_FRAME,
            [
                ("gic.distributor", gic.distributor.raw(), V2_FRAME),
                (
                    "gic.cpu_interface",
                    cpu_interface.raw(),
                    V2_CPU_INTERFACE_SIZE,
                ),
                ("gic.hyp_interface", hyp_interface.raw(), V2_FRAME),
                (
                    "gic.virtual_cpu_interface",
                    virtual_cpu_interface.raw(),
                    V2_CPU_INTERFACE_SIZE,
                ),
            ],
        ),
    };
    for (name, base, size) in frames.into_iter().filter(|f| f.2 > 0) {
        if !base.is_multiple_of(frame) {
            return Err(err(
                Field::board(name),
                Problem::Misaligned {
                    value: base,
                    align: frame,
                },
            ));
        }
        let range = PhysRange {
            base: crate::addr::HostPhysAddr::new(base),
            size,
        };
        if range.overlaps(&b.ram) {
            return Err(err(Field::board(name), Problem::InsideRam));
        }
    }
    let ppis = [
        ("gic.maintenance_intid", Some(gic.maintenance_intid)),
        ("gic.hyp_timer_intid", Some(gic.hyp_timer_intid)),
        ("gic.virtual_timer_intid", Some(gic.virtual_timer_intid)),
        ("gic.physical_timer_intid", Some(gic.physical_timer_intid)),
        ("gic.secure_timer_intid", Some(gic.secure_timer_intid)),
        ("gic.pmu_intid", gic.pmu_intid),
    ];
    for (k, &(name, intid)) in ppis.iter().enumerate() {
        let Some(intid) = intid else { continue };
        in_range(Field::board(name), intid, 16..=31)?;
        if let Some(&(other, _)) = ppis[..k].iter().find(|(_, i)| *i == Some(intid)) {
            return Err(err(Field::board(name), Problem::SameInterrupt { other }));
        }
    }
    Ok(())
}

/// The guest-physical windows of the devices a partition with `vcpus` vCPUs sees on board `b`:
/// its PL011 and its GIC (at the machine's own GIC addresses).
fn device_windows(b: &Board, vcpus: u64) -> impl Iterator<Item = (&'static str, u64, u64)> {
    let uart = b.guest_uart.map(|u| ("PL011", u.base.raw(), pl011::SIZE));
    let gic = b.gic.map(|g| {
        let cpu = match g.cpu {
            GicCpu::V3 {
                redistributors,
                redistributor_stride,
            } => (
                "GIC redistributors",
                redistributors.raw(),
                redistributor_stride.saturating_mul(vcpus),
            ),
            GicCpu::V2 { cpu_interface, .. } => (
                "GIC CPU interface",
                cpu_interface.raw(),
                V2_CPU_INTERFACE_SIZE,
            ),
        };
        [
            ("GIC distributor", g.distributor.raw(), g.distributor_size()),
            cpu,
        ]
    });
    uart.into_iter().chain(gic.into_iter().flatten())
}

fn validate_partition(sys: &System, i: usize, p: &Partition) -> Result {
    let b = &sys.board;
    if p.name.is_empty() {
        return Err(err(Field::partition(i, "name"), Problem::Empty));
    }
    if p.name == "tandem" {
        return Err(err(Field::partition(i, "name"), Problem::HypervisorName));
    }
    // The copies of one fault-tolerant partition share its name.
    let same_pair = |q: &Partition| matches!((p.ft, q.ft), (Some(a), Some(b)) if a.pair == b.pair);
    if let Some(other) = sys.partitions[..i]
        .iter()
        .position(|q| q.name == p.name && !same_pair(q))
    {
        return Err(err(
            Field::partition(i, "name"),
            Problem::DuplicateName { other },
        ));
    }
    validate_cpus(sys, i, p)?;
    if p.memory.is_empty() {
        return Err(err(Field::partition(i, "memory"), Problem::Empty));
    }
    for (j, r) in p.memory.iter().enumerate() {
        validate_region(sys, i, j, r)?;
    }
    if b.arch == Arch::X86_64
        && p.region_for(GuestPhysAddr::new(0), X86_BOOT_TABLES.end)
            .is_none()
    {
        return Err(err(
            Field::partition(i, "memory"),
            Problem::BootTablesUnmapped,
        ));
    }
    if b.arch == Arch::X86_64 && p.unbacked == Unbacked::ExternalAbort {
        return Err(err(
            Field::partition(i, "unbacked"),
            Problem::NoExternalAbort,
        ));
    }
    validate_image(b, i, p)?;
    if let Some(kernel) = &p.kernel {
        validate_kernel(b, i, p, kernel)?;
    }
    for (j, r) in p.ports.iter().enumerate() {
        validate_ports(sys, i, j, r)?;
    }
    if let Some(ft) = p.ft {
        validate_ft(sys, i, p, ft)?;
    }
    if p.pmu {
        validate_pmu(b, i, p)?;
    }
    Ok(())
}

/// A partition that uses the PMU itself: on aarch64 only, on a board that names the PMU's
/// overflow interrupt, and never fault-tolerant (its two copies' counts differ, and nothing the
/// log records can make them agree). Whether the CPU can prohibit counting at EL2
/// (FEAT_PMUv3p1) is known only at boot: the hypervisor hides the PMU where it cannot.
fn validate_pmu(b: &Board, i: usize, p: &Partition) -> Result {
    let field = Field::partition(i, "pmu");
    if b.arch != Arch::Aarch64 {
        return Err(err(field, Problem::PmuArch));
    }
    if b.gic.is_none_or(|g| g.pmu_intid.is_none()) {
        return Err(err(field, Problem::NoPmu));
    }
    if p.ft.is_some() {
        return Err(err(field, Problem::FtPmu));
    }
    Ok(())
}

/// A copy whose peer is on another board: the board has a NIC, the three stations differ, and
/// no other partition uses the NIC.
fn validate_ethernet(sys: &System, i: usize, net: FtNet) -> Result {
    let field = |name| Field::partition(i, name);
    if sys.board.nic.is_none() {
        return Err(err(field("ft.link"), Problem::FtNoNic));
    }
    let distinct = net
        .stations()
        .enumerate()
        .all(|(k, a)| net.stations().skip(k + 1).all(|b| a != b));
    if !distinct {
        return Err(err(field("ft"), Problem::FtAddresses));
    }
    let first = sys.partitions[..i].iter().position(|q| {
        q.ft.is_some_and(|theirs| matches!(theirs.link, FtLink::Ethernet(_)))
    });
    if let Some(first) = first {
        return Err(err(field("ft.link"), Problem::FtEthernetPairs { first }));
    }
    Ok(())
}

/// A fault-tolerant copy replays a single vCPU whose every input is logged, and its peer is the
/// same partition in the other role.
fn validate_ft(sys: &System, i: usize, p: &Partition, ft: Ft) -> Result {
    let field = |name| Field::partition(i, name);
    if p.cpus.len() != 1 {
        return Err(err(field("cpus"), Problem::FtVcpus));
    }
    if let Some(r) = p.ports.iter().find(|r| r.mode == PortMode::Passthrough) {
        return Err(err(field("ports"), Problem::FtPassthrough { port: r.base }));
    }
    match ft.link {
        FtLink::Ethernet(net) => validate_ethernet(sys, i, net)?,
        FtLink::Ring => validate_ring_peer(sys, i, p, ft)?,
    }
    if usize::from(ft.pair) >= MAX_FT_PAIRS {
        return Err(err(
            field("ft.pair"),
            Problem::OutOfRange {
                value: ft.pair.into(),
                min: 0,
                max: MAX_FT_PAIRS as u64 - 1,
            },
        ));
    }
    if ft.delivery == FtDelivery::Precise {
        return Err(err(
            field("ft.delivery"),
            Problem::FtPrecise {
                counter: sys.board.instruction_counter,
            },
        ));
    }
    if ft.heartbeat_us == 0 {
        return Err(err(field("ft.heartbeat_us"), Problem::Empty));
    }
    if ft.suspect_after == 0 {
        return Err(err(
            field("ft.suspect_after"),
            Problem::OutOfRange {
                value: 0,
                min: 1,
                max: u8::MAX.into(),
            },
        ));
    }
    Ok(())
}

/// On one board, the primary and backup name each other; a spare names the primary, and a pair
/// has one.
fn validate_ring_peer(sys: &System, i: usize, p: &Partition, ft: Ft) -> Result {
    let field = |name| Field::partition(i, name);
    let peer = usize::from(ft.peer);
    let same_guest = |q: &Partition| {
        let layout = |r: &MemoryRegion| (r.gpa, r.size, r.executable);
        q.name == p.name
            && q.image == p.image
            && q.args == p.args
            && q.ports == p.ports
            && q.memory.iter().map(layout).eq(p.memory.iter().map(layout))
    };
    let paired = sys.partitions.get(peer).is_some_and(|q| {
        q.ft.is_some_and(|theirs| {
            let roles = match ft.role {
                FtRole::Spare => theirs.role == FtRole::Primary,
                _ => theirs.peer as usize == i && theirs.role != ft.role,
            };
            roles
                && theirs.pair == ft.pair
                && theirs.link == ft.link
                && theirs.delivery == ft.delivery
        }) && same_guest(q)
    });
    if peer == i || !paired {
        return Err(err(field("ft"), Problem::FtPeer { peer }));
    }
    // The second spare of a pair is the one refused.
    let earlier_spare = sys.partitions[..i]
        .iter()
        .filter_map(|q| q.ft)
        .any(|theirs| theirs.pair == ft.pair && theirs.role == FtRole::Spare);
    if ft.role == FtRole::Spare && earlier_spare {
        return Err(err(field("ft"), Problem::FtSpares { pair: ft.pair }));
    }
    Ok(())
}

fn validate_cpus(sys: &System, i: usize, p: &Partition) -> Result {
    let field = Field::partition(i, "cpus");
    if p.cpus.is_empty() {
        return Err(err(field, Problem::Empty));
    }
    if sys.board.arch == Arch::X86_64 && p.cpus.len() > X86_MAX_VCPUS {
        return Err(err(field, Problem::TooManyVcpus { max: X86_MAX_VCPUS }));
    }
    for (k, &cpu) in p.cpus.iter().enumerate() {
        if cpu >= sys.board.cpus {
            return Err(err(
                field,
                Problem::NoSuchCpu {
                    cpu,
                    cpus: sys.board.cpus,
                },
            ));
        }
        if p.cpus[..k].contains(&cpu) {
            return Err(err(field, Problem::CpuTaken { cpu, other: i }));
        }
        if let Some(other) = sys.partitions[..i]
            .iter()
            .position(|q| q.cpus.contains(&cpu))
        {
            return Err(err(field, Problem::CpuTaken { cpu, other }));
        }
    }
    Ok(())
}

fn validate_region(sys: &System, i: usize, j: usize, r: &MemoryRegion) -> Result {
    let field = |name| Field::item(i, "memory", j, name);
    page_aligned(field("gpa"), r.gpa.raw())?;
    page_aligned(field("hpa"), r.hpa.raw())?;
    page_aligned(field("size"), r.size)?;
    if r.size == 0 {
        return Err(err(field("size"), Problem::Empty));
    }
    if r.gpa
        .raw()
        .checked_add(r.size)
        .is_none_or(|end| end > MAX_GPA)
    {
        return Err(err(
            field("gpa"),
            Problem::OutOfRange {
                value: r.gpa.raw(),
                min: 0,
                max: MAX_GPA - r.size,
            },
        ));
    }
    let vcpus = sys.partitions[i].cpus.len() as u64;
    if let Some((device, ..)) = device_windows(&sys.board, vcpus).find(|&(_, base, size)| {
        r.gpa.raw() < base.saturating_add(size) && base < r.gpa.raw() + r.size
    }) {
        return Err(err(field("gpa"), Problem::OverlapsDevice { device }));
    }
    let host = r.host_range();
    if !sys.board.ram.contains(&host) {
        return Err(err(field("hpa"), Problem::OutsideRam));
    }
    if host.overlaps(&sys.board.hypervisor) {
        return Err(err(field("hpa"), Problem::OverlapsHypervisor));
    }
    if sys
        .board
        .images
        .is_some_and(|images| host.overlaps(&images.range))
    {
        return Err(err(field("hpa"), Problem::OverlapsImages));
    }
    if sys.board.arch == Arch::X86_64 && host.base.raw() < LOW_MEMORY_END {
        return Err(err(field("hpa"), Problem::LowMemory));
    }
    // Host ranges are exclusive across the whole system; guest ranges within one partition.
    for (pi, q) in sys.partitions[..=i].iter().enumerate() {
        let earlier = if pi == i {
            &q.memory[..j]
        } else {
            &q.memory[..]
        };
        for (qj, other) in earlier.iter().enumerate() {
            if host.overlaps(&other.host_range()) {
                return Err(err(
                    field("hpa"),
                    Problem::Overlaps {
                        other_partition: pi,
                        other_item: qj,
                    },
                ));
            }
            let guest_overlap = r.gpa.raw() < other.gpa.raw() + other.size
                && other.gpa.raw() < r.gpa.raw() + r.size;
            if pi == i && guest_overlap {
                return Err(err(
                    field("gpa"),
                    Problem::Overlaps {
                        other_partition: pi,
                        other_item: qj,
                    },
                ));
            }
        }
    }
    Ok(())
}

fn validate_image(b: &Board, i: usize, p: &Partition) -> Result {
    let img = &p.image;
    let field = |name| Field::partition(i, name);
    if img.size == 0 {
        return Err(err(field("image"), Problem::Empty));
    }
    check_beside(b, field("image"), img.source, img.size)?;
    let arch = b.arch;
    if p.region_for(img.load, img.size).is_none() {
        return Err(err(
            field("load"),
            Problem::NotInMemory {
                value: img.load.raw(),
            },
        ));
    }
    let boot_tables_hit = arch == Arch::X86_64
        && img.load.raw() < X86_BOOT_TABLES.end
        && X86_BOOT_TABLES.start < img.load.raw() + img.size;
    if boot_tables_hit {
        return Err(err(
            field("load"),
            Problem::Reserved {
                value: img.load.raw(),
            },
        ));
    }
    let entry_inside = img
        .entry
        .offset_from(img.load)
        .is_some_and(|off| off < img.size);
    if !entry_inside {
        return Err(err(
            field("entry"),
            Problem::NotInMemory {
                value: img.entry.raw(),
            },
        ));
    }
    Ok(())
}

/// An image carried beside the hypervisor lies inside the board's image area.
fn check_beside(b: &Board, field: Field, source: ImageSource, size: u64) -> Result {
    if let ImageSource::Beside { offset, .. } = source {
        let area = b.images.ok_or(err(field, Problem::NoImageArea))?.range;
        if offset.checked_add(size).is_none_or(|end| end > area.size) {
            return Err(err(
                field,
                Problem::OutsideImageArea {
                    end: offset.saturating_add(size),
                    size: area.size,
                },
            ));
        }
    }
    Ok(())
}

/// A Linux kernel's memory (Documentation/arch/arm64/booting.rst): its image at `text_offset`
/// above a 2 MiB-aligned base, the memory it uses (`image_size`), then its device tree, then
/// its initial RAM disk, each inside the partition's memory and none over another.
fn validate_kernel(b: &Board, i: usize, p: &Partition, k: &KernelBoot) -> Result {
    let field = |name| Field::partition(i, name);
    if b.arch != Arch::Aarch64 {
        return Err(err(field("image"), Problem::ArchMismatch));
    }
    let (load, end) = (
        p.image.load.raw(),
        p.image.load.raw().saturating_add(k.image_size),
    );
    if k.image_size < p.image.size || p.region_for(p.image.load, k.image_size).is_none() {
        return Err(err(field("image"), Problem::NotInMemory { value: end }));
    }
    let dtb = k.dtb.raw();
    if !dtb.is_multiple_of(8) || dtb < end || p.region_for(k.dtb, DTB_ROOM).is_none() {
        return Err(err(field("image"), Problem::NotInMemory { value: dtb }));
    }
    if let Some(initrd) = k.initrd {
        let start = initrd.gpa.raw();
        let clear =
            start >= dtb.saturating_add(DTB_ROOM) || start.saturating_add(initrd.size) <= load;
        if initrd.size == 0 || !clear || p.region_for(initrd.gpa, initrd.size).is_none() {
            return Err(err(field("initrd"), Problem::NotInMemory { value: start }));
        }
        check_beside(b, field("initrd"), initrd.source, initrd.size)?;
    }
    Ok(())
}

fn board_ports(b: &Board) -> impl Iterator<Item = PortRange> {
    let uart = |u: Uart| match u {
        Uart::Pio16550 { port } => Some(PortRange {
            base: port,
            count: COM1_PORTS,
            mode: PortMode::Passthrough,
        }),
        Uart::Pl011 { .. } | Uart::Semihosting => None,
    };
    let exit = match b.exit {
        ExitDevice::Bochs => Some(PortRange {
            base: 0x8900,
            count: 1,
            mode: PortMode::Passthrough,
        }),
        ExitDevice::QemuDebugExit { port } => Some(PortRange {
            base: port,
            count: 4,
            mode: PortMode::Passthrough,
        }),
        ExitDevice::Semihosting | ExitDevice::Halt => None,
    };
    [uart(b.console), uart(b.log), exit].into_iter().flatten()
}

fn validate_ports(sys: &System, i: usize, j: usize, r: &PortRange) -> Result {
    let field = |name| Field::item(i, "ports", j, name);
    if sys.board.arch != Arch::X86_64 {
        return Err(err(field("base"), Problem::ArchMismatch));
    }
    if r.count == 0 || r.end() > 0x1_0000 {
        return Err(err(
            field("count"),
            Problem::OutOfRange {
                value: r.count.into(),
                min: 1,
                max: 0x1_0000 - u64::from(r.base),
            },
        ));
    }
    // In 32 bits: a range may end at 0x10000, which a u16 end would wrap or saturate to 0xFFFF.
    let overlaps =
        |a: &PortRange, b: &PortRange| u32::from(a.base) < b.end() && u32::from(b.base) < a.end();
    let virtual_uart = PortRange {
        base: COM1_BASE,
        count: COM1_PORTS,
        mode: PortMode::Ignore,
    };
    if overlaps(r, &virtual_uart) {
        return Err(err(
            field("base"),
            Problem::Reserved {
                value: r.base.into(),
            },
        ));
    }
    if r.mode == PortMode::Passthrough {
        if let Some(m) = MACHINE_PORTS
            .iter()
            .find(|m| u32::from(m.first) < r.end() && r.base <= m.last)
        {
            return Err(err(
                field("base"),
                Problem::MachinePort {
                    port: m.first.max(r.base),
                    device: m.device,
                },
            ));
        }
        if let Some(hv) = board_ports(&sys.board).find(|hv| overlaps(r, hv)) {
            return Err(err(
                field("base"),
                Problem::Reserved {
                    value: hv.base.into(),
                },
            ));
        }
        for (pi, q) in sys.partitions[..=i].iter().enumerate() {
            let earlier = if pi == i { &q.ports[..j] } else { &q.ports[..] };
            if let Some(qj) = earlier
                .iter()
                .position(|o| o.mode == PortMode::Passthrough && overlaps(r, o))
            {
                return Err(err(
                    field("base"),
                    Problem::Overlaps {
                        other_partition: pi,
                        other_item: qj,
                    },
                ));
            }
        }
    }
    Ok(())
}
