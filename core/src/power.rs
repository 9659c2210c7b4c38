//! Power management a partition asks for: its firmware interface's version, starting and
//! stopping its own vCPUs, powering itself off, and restarting itself.
//!
//! The numbers follow the Arm Power State Coordination Interface (DEN 0022, PSCI 1.1), which is
//! what aarch64 guests call; a backend decodes its firmware calls into [`PowerRequest`] and writes
//! the status back unchanged.

use crate::addr::GuestPhysAddr;
use crate::config::Partition;

/// The firmware interface version reported to guests: major in the upper 16 bits (1.1).
pub const VERSION: u64 = 0x0001_0001;

/// What the guest asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerRequest {
    Version,
    /// Whether a call is implemented; the backend has decoded which call was asked about.
    Features {
        implemented: bool,
    },
    /// Start vCPU `target` of the same partition at `entry`, with `context` in its first argument
    /// register.
    CpuOn {
        target: u64,
        entry: u64,
        context: u64,
    },
    /// Stop the calling vCPU.
    CpuOff,
    /// Whether vCPU `target` of the same partition runs.
    AffinityInfo {
        target: u64,
    },
    /// Stop the whole partition.
    SystemOff,
    /// Restart the whole partition from its image.
    SystemReset,
    /// A function this interface does not implement.
    Unknown {
        function: u32,
    },
}

/// Status codes (DEN 0022, 5.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum PowerStatus {
    Success = 0,
    NotSupported = -1,
    InvalidParameters = -2,
    Denied = -3,
    AlreadyOn = -4,
    /// The entry point is not in memory the caller owns (DEN 0022, 5.6.2: "known to be invalid
    /// because it is in a range that is known not to be available to the caller").
    InvalidAddress = -9,
}

/// Whether vCPU `caller` of `partition` may start its vCPU `target` at `entry`: the target must
/// be another vCPU of the same partition, and its first instruction must lie in the partition's
/// own memory (a start elsewhere would fetch from a device window or from nothing at all).
pub fn check_cpu_on(
    partition: &Partition,
    caller: u32,
    target: u64,
    entry: u64,
) -> Result<(), PowerStatus> {
    if target >= partition.cpus.len() as u64 {
        Err(PowerStatus::InvalidParameters)
    } else if target == u64::from(caller) {
        Err(PowerStatus::AlreadyOn)
    } else if partition.region_for(GuestPhysAddr::new(entry), 4).is_none() {
        Err(PowerStatus::InvalidAddress)
    } else {
        Ok(())
    }
}

/// AFFINITY_INFO answers.
pub const AFFINITY_ON: u64 = 0;
pub const AFFINITY_OFF: u64 = 1;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::HostPhysAddr;
    use crate::config::{Image, ImageSource, MemoryRegion, Unbacked};

    const MEMORY: u64 = 0x20_0000;

    /// Two vCPUs and 2 MiB of memory at GPA 0.
    fn two_vcpus() -> Partition {
        let mut p = Partition {
            name: "guest".try_into().unwrap(),
            cpus: heapless::Vec::from_slice(&[0, 1]).unwrap(),
            memory: heapless::Vec::new(),
            image: Image {
                source: ImageSource::Bundle { index: 0 },
                load: GuestPhysAddr::new(0x10_0000),
                entry: GuestPhysAddr::new(0x10_0000),
                size: 0x1000,
            },
            ports: heapless::Vec::new(),
            args: heapless::String::new(),
            kernel: None,
            ft: None,
            console_input: false,
            unbacked: Unbacked::Stop,
            pmu: false,
        };
        p.memory
            .push(MemoryRegion {
                gpa: GuestPhysAddr::new(0),
                hpa: HostPhysAddr::new(0x100_0000),
                size: MEMORY,
                executable: true,
            })
            .unwrap();
        p
    }

    #[test]
    fn cpu_on_inside_the_partition_is_allowed() {
        assert_eq!(check_cpu_on(&two_vcpus(), 0, 1, 0x4000), Ok(()));
        assert_eq!(check_cpu_on(&two_vcpus(), 0, 1, MEMORY - 4), Ok(()));
    }

    #[test]
    fn cpu_on_refuses_foreign_vcpus_and_itself() {
        let p = two_vcpus();
        assert_eq!(
            check_cpu_on(&p, 0, 2, 0x4000),
            Err(PowerStatus::InvalidParameters)
        );
        assert_eq!(
            check_cpu_on(&p, 0, u64::MAX, 0x4000),
            Err(PowerStatus::InvalidParameters)
        );
        assert_eq!(check_cpu_on(&p, 1, 1, 0x4000), Err(PowerStatus::AlreadyOn));
    }

    #[test]
    fn cpu_on_entry_outside_the_partition_is_an_invalid_address() {
        let p = two_vcpus();
        for entry in [MEMORY, MEMORY - 2, 0x0900_0000, u64::MAX - 1, u64::MAX] {
            assert_eq!(
                check_cpu_on(&p, 0, 1, entry),
                Err(PowerStatus::InvalidAddress),
                "entry {entry:#x}"
            );
        }
    }
}
