//! Each rule, broken on purpose, names the field and the reason.

use super::*;
use crate::addr::{GuestPhysAddr, HostPhysAddr};
use crate::fake::system;

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
