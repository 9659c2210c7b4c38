//! Each rule, broken on purpose, names the field and the reason.

use super::*;
use crate::addr::{GuestPhysAddr, HostPhysAddr};
use crate::fake::{aarch64_system, ft, system};

fn message(sys: &System) -> String {
    validate(sys)
        .expect_err("config should be rejected")
        .to_string()
}

#[test]
fn the_sample_system_is_valid() {
    assert_eq!(validate(&system()), Ok(()));
}

#[test]
fn overlapping_host_memory_is_rejected() {
    let mut sys = system();
    sys.partitions[1].memory[0].hpa = HostPhysAddr::new(0x110_0000);
    assert_eq!(
        message(&sys),
        "partition[1].memory[0].hpa: overlaps an earlier range (partition[0], entry 0)"
    );
}

#[test]
fn memory_inside_the_hypervisor_is_rejected() {
    let mut sys = system();
    sys.partitions[0].memory[0].hpa = HostPhysAddr::new(0x20_0000);
    assert_eq!(
        message(&sys),
        "partition[0].memory[0].hpa: overlaps the hypervisor's own memory"
    );
}

#[test]
fn unaligned_sizes_and_missing_ram_are_rejected() {
    let mut sys = system();
    sys.partitions[0].memory[0].size = 0x1234;
    assert_eq!(
        message(&sys),
        "partition[0].memory[0].size: 0x1234 is not a multiple of 4 KiB"
    );
    let mut sys = system();
    sys.partitions[1].memory[0].hpa = HostPhysAddr::new(0x1000_0000);
    assert_eq!(
        message(&sys),
        "partition[1].memory[0].hpa: is not inside the board's RAM"
    );
}

#[test]
fn cpus_must_exist_and_be_exclusive() {
    let mut sys = system();
    sys.partitions[1].cpus[0] = 0;
    assert_eq!(
        message(&sys),
        "partition[1].cpus: CPU 0 is already given to partition[0]"
    );
    let mut sys = system();
    sys.partitions[1].cpus[0] = 5;
    assert_eq!(
        message(&sys),
        "partition[1].cpus: CPU 5 does not exist (the board has 2)"
    );
    let mut sys = system();
    sys.partitions[1].cpus.push(0).unwrap();
    assert!(message(&sys).contains("at most 1 vCPU"));
}

#[test]
fn names_must_be_unique() {
    let mut sys = system();
    sys.partitions[1].name = "a".try_into().unwrap();
    assert_eq!(
        message(&sys),
        "partition[1].name: the same name is already used by partition[0]"
    );
}

#[test]
fn no_partition_takes_the_hypervisors_name() {
    let mut sys = system();
    sys.partitions[1].name = "tandem".try_into().unwrap();
    assert_eq!(
        message(&sys),
        "partition[1].name: `tandem` is the hypervisor's name on the console: its lines could pass for the hypervisor's"
    );
}

#[test]
fn one_partition_at_most_takes_the_console_input() {
    let mut sys = system();
    sys.partitions[0].console_input = true;
    assert_eq!(validate(&sys), Ok(()));
    sys.partitions[1].console_input = true;
    assert_eq!(
        message(&sys),
        "partition[1].console_input: partition[0] already takes the console input; only one partition can"
    );
}

#[test]
fn x86_partitions_stop_on_unbacked_accesses() {
    let mut sys = system();
    sys.partitions[1].unbacked = Unbacked::ExternalAbort;
    assert_eq!(
        message(&sys),
        "partition[1].unbacked: must be \"stop\": x86_64 has no synchronous external abort to give a guest, so an access nothing backs stops the partition"
    );
    let mut sys = aarch64_system();
    sys.partitions[0].unbacked = Unbacked::ExternalAbort;
    assert_eq!(validate(&sys), Ok(()));
}

#[test]
fn image_must_fit_and_not_cover_the_boot_tables() {
    let mut sys = system();
    sys.partitions[0].image.entry = GuestPhysAddr::new(0x50_0000);
    assert_eq!(
        message(&sys),
        "partition[0].entry: 0x500000 is not inside the partition's memory"
    );
    let mut sys = system();
    sys.partitions[0].image.load = GuestPhysAddr::new(0x2000);
    sys.partitions[0].image.entry = GuestPhysAddr::new(0x2000);
    assert_eq!(
        message(&sys),
        "partition[0].load: 0x2000 is reserved by the hypervisor"
    );
    let mut sys = system();
    sys.partitions[0].memory[0].gpa = GuestPhysAddr::new(0x10_0000);
    assert!(message(&sys).starts_with("partition[0].memory: must contain GPA 0x0..0x7000"));
}

#[test]
fn passthrough_ports_may_not_reach_hypervisor_devices() {
    let mut sys = system();
    sys.partitions[0].ports[0] = PortRange {
        base: 0x2f8,
        count: 8,
        mode: PortMode::Passthrough,
    };
    assert_eq!(
        message(&sys),
        "partition[0].ports[0].base: 0x2f8 is reserved by the hypervisor"
    );
    sys.partitions[0].ports[0].base = 0x3f8;
    assert_eq!(
        message(&sys),
        "partition[0].ports[0].base: 0x3f8 is reserved by the hypervisor"
    );
}

#[test]
fn bundles_round_trip_and_reject_corruption() {
    use crate::bundle::{Bundle, BundleError, encode};
    let sys = system();
    let config = postcard::to_allocvec(&sys).unwrap();
    let (img_a, img_b) = (vec![0xaa; 0x1000], vec![0xbb; 0x1000]);
    let mut bytes = Vec::new();
    encode(&config, &[&img_a, &img_b], |b| bytes.extend_from_slice(b));
    let bundle = Bundle::parse(&bytes).expect("valid bundle");
    assert_eq!(bundle.system, sys);
    assert_eq!(bundle.image(1), Some(&img_b[..]));
    assert_eq!(bundle.image(2), None);

    let mut corrupt = bytes.clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    assert!(matches!(
        Bundle::parse(&corrupt),
        Err(BundleError::ChecksumMismatch { .. })
    ));
    assert!(matches!(
        Bundle::parse(&bytes[..bytes.len() - 10]),
        Err(BundleError::Truncated)
    ));

    let mut short = Vec::new();
    encode(&config, &[&img_a], |b| short.extend_from_slice(b));
    assert!(matches!(
        Bundle::parse(&short),
        Err(BundleError::MissingImage { partition: 1 })
    ));
}

#[test]
fn aarch64_boards_must_describe_their_gic_and_guest_uart() {
    assert_eq!(validate(&aarch64_system()), Ok(()));
    let mut sys = aarch64_system();
    sys.board.gic = None;
    assert_eq!(
        message(&sys),
        "board.gic: must be given on this board's architecture"
    );
    let mut sys = aarch64_system();
    sys.board.guest_uart = None;
    assert_eq!(
        message(&sys),
        "board.guest_uart: must be given on this board's architecture"
    );
    let mut sys = system();
    sys.board.gic = aarch64_system().board.gic;
    assert_eq!(
        message(&sys),
        "board.gic: does not exist on this board's architecture"
    );
}

#[test]
fn aarch64_ram_must_lie_where_the_boot_map_has_normal_memory() {
    let mut sys = aarch64_system();
    sys.board.ram.size = 0x8020_0000;
    assert_eq!(
        message(&sys),
        "board.ram: 0xc0200000 is outside the allowed range 0x40000000..=0xc0000000"
    );
}

#[test]
fn gicv2_frames_are_page_aligned_and_outside_ram() {
    let with = |cpu: u64, hyp: u64| {
        let mut sys = aarch64_system();
        let gic = sys.board.gic.as_mut().unwrap();
        gic.cpu = GicCpu::V2 {
            cpu_interface: HostPhysAddr::new(cpu),
            hyp_interface: HostPhysAddr::new(hyp),
            virtual_cpu_interface: HostPhysAddr::new(0x0804_0000),
        };
        validate(&sys).map_err(|e| e.to_string())
    };
    assert_eq!(with(0x0801_0000, 0x0803_0000), Ok(()));
    assert_eq!(
        with(0x0801_0800, 0x0803_0000),
        Err("board.gic.cpu_interface: 0x8010800 is not a multiple of 0x1000".into())
    );
    assert_eq!(
        with(0x0801_0000, 0x4000_0000),
        Err("board.gic.hyp_interface: lies inside the board's RAM".into())
    );
}

#[test]
fn gic_facts_are_checked() {
    let with = |f: fn(&mut Gic)| {
        let mut sys = aarch64_system();
        f(sys.board.gic.as_mut().unwrap());
        message(&sys)
    };
    assert_eq!(
        with(|g| g.distributor = HostPhysAddr::new(0x0800_1000)),
        "board.gic.distributor: 0x8001000 is not a multiple of 0x10000"
    );
    assert_eq!(
        with(|g| {
            g.cpu = GicCpu::V3 {
                redistributors: HostPhysAddr::new(0x080a_0000),
                redistributor_stride: 0x1_0000,
            }
        }),
        "board.gic.redistributor_stride: 0x10000 is outside the allowed range 0x20000..=0x40000"
    );
    assert_eq!(
        with(|g| g.virtual_timer_intid = 40),
        "board.gic.virtual_timer_intid: 0x28 is outside the allowed range 0x10..=0x1f"
    );
    assert_eq!(
        with(|g| g.maintenance_intid = 26),
        "board.gic.hyp_timer_intid: is the same interrupt as gic.maintenance_intid"
    );
    assert_eq!(
        with(|g| {
            g.cpu = GicCpu::V3 {
                redistributors: HostPhysAddr::new(0x4000_0000),
                redistributor_stride: 0x2_0000,
            }
        }),
        "board.gic.redistributors: lies inside the board's RAM"
    );
}

#[test]
fn the_pmu_interrupt_is_a_ppi_of_its_own() {
    let with = |f: fn(&mut Gic)| {
        let mut sys = aarch64_system();
        f(sys.board.gic.as_mut().unwrap());
        validate(&sys).map_err(|e| e.to_string())
    };
    assert_eq!(with(|g| g.pmu_intid = None), Ok(()));
    assert_eq!(
        with(|g| g.pmu_intid = Some(33)),
        Err("board.gic.pmu_intid: 0x21 is outside the allowed range 0x10..=0x1f".into())
    );
    assert_eq!(
        with(|g| g.pmu_intid = Some(27)),
        Err("board.gic.pmu_intid: is the same interrupt as gic.virtual_timer_intid".into())
    );
}

#[test]
fn the_pmu_is_given_on_aarch64_boards_with_one_and_never_to_fault_tolerant_partitions() {
    let mut sys = aarch64_system();
    sys.partitions[1].pmu = true;
    assert_eq!(validate(&sys), Ok(()));
    sys.board.gic.as_mut().unwrap().pmu_intid = None;
    assert_eq!(
        message(&sys),
        "partition[1].pmu: the board names no PMU overflow interrupt (`[gic] pmu_intid`), so it \
         has no PMU to give"
    );
    let mut sys = system();
    sys.partitions[1].pmu = true;
    assert_eq!(
        message(&sys),
        "partition[1].pmu: the PMU is given to partitions on aarch64 only (x86_64 partitions see \
         no performance monitoring: CPUID hides it and RDPMC exits)"
    );
    let mut sys = ft_system(0);
    for p in sys.partitions.iter_mut().filter(|p| p.ft.is_some()) {
        p.pmu = true;
    }
    assert_eq!(
        message(&sys),
        "partition[0].pmu: a fault-tolerant partition cannot use the PMU: its counts differ \
         between the primary and the backup (nondeterministic), and the log cannot make them agree"
    );
}

#[test]
fn guest_memory_may_not_cover_the_partitions_devices() {
    let mut sys = aarch64_system();
    sys.partitions[1].memory[0].gpa = GuestPhysAddr::new(0x0800_0000);
    sys.partitions[1].image.load = GuestPhysAddr::new(0x0810_0000);
    sys.partitions[1].image.entry = sys.partitions[1].image.load;
    assert_eq!(
        message(&sys),
        "partition[1].memory[0].gpa: overlaps the window of the partition's GIC distributor"
    );
}

#[test]
fn host_memory_below_1m_is_refused_on_pcs() {
    let mut sys = system();
    sys.partitions[0].memory[0].hpa = HostPhysAddr::new(0);
    sys.partitions[0].memory[0].size = 0x8_0000;
    sys.partitions[0].image.load = GuestPhysAddr::new(0x1_0000);
    sys.partitions[0].image.entry = GuestPhysAddr::new(0x1_0000);
    assert!(
        message(&sys)
            .starts_with("partition[0].memory[0].hpa: lies below 1 MiB, which the machine keeps")
    );
    // Up to the hypervisor at 1 MiB: refused as low memory whatever its size.
    sys.partitions[0].memory[0].hpa = HostPhysAddr::new(0xa_0000);
    sys.partitions[0].memory[0].size = 0x6_0000;
    assert!(message(&sys).contains("below 1 MiB"));
}

#[test]
fn memory_reaching_into_the_hypervisor_from_below_is_refused() {
    let mut sys = system();
    sys.partitions[0].memory[0].hpa = HostPhysAddr::new(0xfc0_0000);
    sys.board.hypervisor.base = HostPhysAddr::new(0xfd0_0000);
    sys.board.hypervisor.size = 0x30_0000;
    assert_eq!(
        message(&sys),
        "partition[0].memory[0].hpa: overlaps the hypervisor's own memory"
    );
}

#[test]
fn chipset_ports_cannot_be_passed_through() {
    let cases: &[(u16, u16, &str)] = &[
        (0x00, 0x10, "port 0x0 belongs to the ISA DMA controller 1"),
        (0x20, 2, "port 0x20 belongs to the master PIC"),
        (0xa1, 1, "port 0xa1 belongs to the slave PIC"),
        (0x3c, 8, "port 0x40 belongs to the PIT"),
        (0x61, 1, "port 0x61 belongs to the system control port B"),
        (0x60, 1, "port 0x60 belongs to the keyboard controller"),
        (0x64, 1, "port 0x64 belongs to the keyboard controller"),
        (0x80, 2, "port 0x81 belongs to the ISA DMA page registers"),
        (0x92, 1, "port 0x92 belongs to the system control port A"),
        (0xd0, 1, "port 0xd0 belongs to the ISA DMA controller 2"),
        (
            0xcfc,
            4,
            "port 0xcfc belongs to the PCI configuration space",
        ),
        (
            0xc00,
            0x400,
            "port 0xcf8 belongs to the PCI configuration space",
        ),
    ];
    for &(base, count, expected) in cases {
        let mut sys = system();
        sys.partitions[1].ports[0] = PortRange {
            base,
            count,
            mode: PortMode::Passthrough,
        };
        let got = message(&sys);
        assert!(
            got.starts_with("partition[1].ports[0].base: ") && got.contains(expected),
            "{base:#x}+{count}: {got}"
        );
        sys.partitions[1].ports[0].mode = PortMode::Ignore;
        assert_eq!(validate(&sys), Ok(()), "{base:#x} ignored is harmless");
    }
}

#[test]
fn the_exit_port_cannot_be_passed_through() {
    let mut sys = system();
    sys.partitions[0].ports[0] = PortRange {
        base: 0x8900,
        count: 1,
        mode: PortMode::Passthrough,
    };
    assert_eq!(
        message(&sys),
        "partition[0].ports[0].base: 0x8900 is reserved by the hypervisor"
    );
}

#[test]
fn port_ranges_that_end_at_0x10000_still_overlap() {
    let mut sys = system();
    let port = |base, count| PortRange {
        base,
        count,
        mode: PortMode::Passthrough,
    };
    sys.partitions[0].ports[0] = port(0xfff0, 0x10);
    sys.partitions[1].ports[0] = port(0xffff, 1);
    assert_eq!(
        message(&sys),
        "partition[1].ports[0].base: overlaps an earlier range (partition[0], entry 0)"
    );
    sys.partitions[1].ports[0] = port(0xffff, 2);
    assert_eq!(
        message(&sys),
        "partition[1].ports[0].count: 0x2 is outside the allowed range 0x1..=0x1"
    );
}

/// The aarch64 sample with partition "a" fault-tolerant: its backup and `spares` spare copies,
/// each on its own CPU and host memory.
fn ft_system(spares: usize) -> System {
    let mut sys = aarch64_system();
    sys.board.cpus = 8;
    let primary = sys.partitions[0].clone();
    let copies =
        core::iter::once(FtRole::Backup).chain(core::iter::repeat_n(FtRole::Spare, spares));
    for (k, role) in copies.enumerate() {
        let mut copy = primary.clone();
        copy.cpus[0] = 2 + k as u8;
        copy.memory[0].hpa = HostPhysAddr::new(0x4a00_0000 + k as u64 * 0x40_0000);
        copy.ft = Some(ft(role, 0));
        sys.partitions.push(copy).unwrap();
    }
    sys.partitions[0].ft = Some(ft(FtRole::Primary, 2));
    sys
}

#[test]
fn a_pair_may_have_one_spare() {
    assert_eq!(validate(&ft_system(0)), Ok(()));
    assert_eq!(validate(&ft_system(1)), Ok(()));
    assert_eq!(
        message(&ft_system(2)),
        "partition[4].ft: fault-tolerant pair 0 has more than one spare copy (one spare is supported)"
    );
}

#[test]
fn images_beside_the_hypervisor_need_an_image_area_they_fit() {
    let mut sys = aarch64_system();
    sys.partitions[0].image.source = ImageSource::Beside { offset: 0, crc: 0 };
    assert_eq!(
        message(&sys),
        "partition[0].image: is carried beside the hypervisor, but the board has no image area (`images`)"
    );
    sys.board.images = Some(ImageArea {
        range: PhysRange {
            base: HostPhysAddr::new(0x4800_0000),
            size: 0x1000,
        },
        carrier: ImageCarrier::Loader,
    });
    sys.partitions[0].image.size = 0x2000;
    assert_eq!(
        message(&sys),
        "partition[0].image: ends 0x2000 bytes into the board's image area, which has 0x1000"
    );
    sys.partitions[0].image.size = 0x1000;
    assert_eq!(validate(&sys), Ok(()));
}

#[test]
fn each_architecture_carries_images_its_own_way() {
    let area = |carrier| {
        Some(ImageArea {
            range: PhysRange {
                base: HostPhysAddr::new(0x800_0000),
                size: 0x800_0000,
            },
            carrier,
        })
    };
    let mut x86 = system();
    x86.partitions[0].image.source = ImageSource::Beside { offset: 0, crc: 0 };
    x86.board.images = area(ImageCarrier::Multiboot2);
    assert_eq!(validate(&x86), Ok(()));
    x86.board.images = area(ImageCarrier::Loader);
    assert!(
        message(&x86).starts_with("board.images.carrier: \"loader\" needs a boot path"),
        "{}",
        message(&x86)
    );
    let mut arm = aarch64_system();
    arm.board.ram.size = 512 << 20;
    arm.board.images = area(ImageCarrier::Multiboot2).map(|mut a| {
        a.range.base = HostPhysAddr::new(0x5000_0000);
        a
    });
    assert!(
        message(&arm).starts_with("board.images.carrier: \"multiboot2\" needs a boot path"),
        "{}",
        message(&arm)
    );
    // The area stays off the hypervisor and the partitions on x86 too.
    x86.board.images = area(ImageCarrier::Multiboot2);
    x86.partitions[1].memory[0].hpa = HostPhysAddr::new(0x800_0000);
    assert_eq!(
        message(&x86),
        "partition[1].memory[0].hpa: overlaps the board's image area (`images`), which the boot path fills"
    );
}

#[test]
fn precise_delivery_is_refused_without_a_per_cpu_instruction_counter() {
    let precise = |counter| {
        let mut sys = ft_system(0);
        sys.board.instruction_counter = counter;
        for p in sys.partitions.iter_mut() {
            if let Some(ft) = p.ft.as_mut() {
                ft.delivery = FtDelivery::Precise;
            }
        }
        message(&sys)
    };
    assert_eq!(
        precise(InstructionCounter::None),
        "partition[0].ft.delivery: \"precise\" needs an instruction counter to stop the \
         backup's guest at, and this board has none; use \"exit\""
    );
    let machine_wide = precise(InstructionCounter::MachineWide);
    assert!(
        machine_wide.starts_with(
            "partition[0].ft.delivery: \"precise\" needs an instruction counter of one CPU"
        ),
        "{machine_wide}"
    );
    assert!(machine_wide.contains("QEMU 7.2"), "{machine_wide}");
}

#[test]
fn both_copies_deliver_interrupts_the_same_way() {
    let mut sys = ft_system(0);
    if let Some(ft) = sys.partitions[2].ft.as_mut() {
        ft.delivery = FtDelivery::Precise;
    }
    assert_eq!(
        message(&sys),
        "partition[0].ft: partition[2] is not this partition's other fault-tolerant copy"
    );
}

#[test]
fn a_kernels_image_device_tree_and_initrd_each_fit_without_overlap() {
    let mut sys = aarch64_system();
    let p = &mut sys.partitions[0];
    p.memory[0].size = 0x40_0000;
    p.image.load = GuestPhysAddr::new(0x4000_0000);
    p.image.entry = p.image.load;
    p.image.size = 0x1000;
    let kernel = KernelBoot {
        image_size: 0x10_0000,
        dtb: GuestPhysAddr::new(0x4020_0000),
        initrd: Some(Initrd {
            source: ImageSource::Bundle { index: 0 },
            gpa: GuestPhysAddr::new(0x4030_0000),
            size: 0x1000,
        }),
        cmdline: None,
    };
    p.kernel = Some(kernel);
    assert_eq!(validate(&sys), Ok(()));
    let with = |change: fn(&mut KernelBoot)| {
        let mut sys = sys.clone();
        let mut k = kernel;
        change(&mut k);
        sys.partitions[0].kernel = Some(k);
        message(&sys)
    };
    assert_eq!(
        with(|k| k.dtb = GuestPhysAddr::new(0x4008_0000)),
        "partition[0].image: 0x40080000 is not inside the partition's memory"
    );
    assert_eq!(
        with(|k| k.image_size = 0x100_0000),
        "partition[0].image: 0x41000000 is not inside the partition's memory"
    );
    assert_eq!(
        with(|k| {
            if let Some(initrd) = k.initrd.as_mut() {
                initrd.gpa = GuestPhysAddr::new(0x4020_8000);
            }
        }),
        "partition[0].initrd: 0x40208000 is not inside the partition's memory"
    );
    let mut x86 = system();
    x86.partitions[0].kernel = Some(kernel);
    assert_eq!(
        message(&x86),
        "partition[0].image: does not exist on this board's architecture"
    );
}

#[test]
fn a_boards_nic_picks_its_copys_role_and_peer() {
    let mac = |last| Mac([0xb0, 0xc4, 0x20, 0, 0, last]);
    let net = FtNet {
        primary: mac(1),
        backup: mac(2),
        spare: Some(mac(3)),
        witness: mac(0xf),
        cluster: 7,
    };
    assert_eq!(net.role_of(mac(1)), Some((FtRole::Primary, mac(2))));
    assert_eq!(net.role_of(mac(2)), Some((FtRole::Backup, mac(1))));
    assert_eq!(net.role_of(mac(3)), Some((FtRole::Spare, mac(2))));
    // The witness, or any other station, runs no copy: an image flashed to the wrong board.
    assert_eq!(net.role_of(mac(0xf)), None);
    assert_eq!(net.role_of(mac(9)), None);
}
