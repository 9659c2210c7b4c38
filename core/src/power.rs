//! Power management a partition asks for: its firmware interface's version, starting and
//! stopping its own vCPUs, powering itself off, and restarting itself.
//!
//! The numbers follow the Arm Power State Coordination Interface (DEN 0022, PSCI 1.1), which is
//! what aarch64 guests call; a backend decodes its firmware calls into [`PowerRequest`] and writes
//! the status back unchanged.

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
}

/// AFFINITY_INFO answers.
pub const AFFINITY_ON: u64 = 0;
pub const AFFINITY_OFF: u64 = 1;
