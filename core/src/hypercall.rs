//! The hypercall ABI, the same on every architecture.
//!
//! | | x86_64 (`VMCALL`) | aarch64 (`HVC #0`) |
//! |---|---|---|
//! | call number | `rax` | `x0` |
//! | arguments 0..4 | `rdi`, `rsi`, `rdx`, `r10` | `x1`..`x4` |
//! | status (0 or a negative [`Status`]) | `rax` | `x0` |
//! | value | `rdx` | `x1` |
//!
//! Addresses passed to hypercalls are guest-physical. A bad argument returns an error status and
//! never faults the hypervisor or stops the partition.

/// Major version in the upper 16 bits, minor in the lower 16.
pub const ABI_VERSION: u64 = 0x0001_0000;
/// Longest console write accepted in one call.
pub const CONSOLE_WRITE_MAX: u64 = 4096;
/// The lowest vector a virtual timer may raise (0..31 are x86 exceptions).
pub const TIMER_VECTOR_MIN: u64 = 32;

/// Call numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Call {
    /// () -> value = [`ABI_VERSION`].
    AbiVersion = 0,
    /// (gpa, len) -> value = bytes written. Writes to the partition's console.
    ConsoleWrite = 1,
    /// (gpa, len) -> value = bytes written. Fills a [`PartitionInfo`] at `gpa`.
    PartitionInfo = 2,
    /// () -> 0. Gives up the rest of the time slice (a no-op without a scheduler).
    Yield = 3,
    /// (code) -> does not return. Stops the partition and reports `code`.
    Shutdown = 4,
    /// (delay_ns, vector) -> 0. Raises `vector` once after `delay_ns`; vector 0 disarms.
    TimerSet = 5,
    /// () -> value = nanoseconds since the partition started.
    TimeNow = 6,
}

impl Call {
    pub fn from_nr(nr: u64) -> Option<Call> {
        Some(match nr {
            0 => Call::AbiVersion,
            1 => Call::ConsoleWrite,
            2 => Call::PartitionInfo,
            3 => Call::Yield,
            4 => Call::Shutdown,
            5 => Call::TimerSet,
            6 => Call::TimeNow,
            _ => return None,
        })
    }
}

/// Error statuses (negative in the status register).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i64)]
pub enum Status {
    Ok = 0,
    /// No such call.
    NoSys = -1,
    /// An argument is out of range.
    Invalid = -2,
    /// A buffer is not entirely inside the partition's memory.
    Fault = -3,
}

/// What `PARTITION_INFO` writes, little-endian, 104 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct PartitionInfo {
    pub abi_version: u32,
    pub id: u32,
    pub vcpus: u32,
    /// How many times the partition was restarted at its own request.
    pub resets: u32,
    pub memory_bytes: u64,
    /// NUL-padded.
    pub name: [u8; 16],
    /// NUL-padded.
    pub args: [u8; 64],
}

pub const PARTITION_INFO_SIZE: usize = core::mem::size_of::<PartitionInfo>();
const _: () = assert!(PARTITION_INFO_SIZE == 104);

impl PartitionInfo {
    pub fn to_bytes(&self) -> [u8; PARTITION_INFO_SIZE] {
        let mut out = [0u8; PARTITION_INFO_SIZE];
        out[0..4].copy_from_slice(&self.abi_version.to_le_bytes());
        out[4..8].copy_from_slice(&self.id.to_le_bytes());
        out[8..12].copy_from_slice(&self.vcpus.to_le_bytes());
        out[12..16].copy_from_slice(&self.resets.to_le_bytes());
        out[16..24].copy_from_slice(&self.memory_bytes.to_le_bytes());
        out[24..40].copy_from_slice(&self.name);
        out[40..104].copy_from_slice(&self.args);
        out
    }
}
