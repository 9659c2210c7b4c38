//! The recovery's shared state in the ledger: who owns the recovery, which CPUs stopped, when
//! they may go on, each CPU's heartbeat and vCPU status, and the record of what was detected.
//! Plain `#[repr(C)]` data (atomics are plain words), valid when all-zero.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use tandem_core::config::MAX_CPUS;
use tandem_recovery::escalation::History;
use tandem_recovery::steps::Timeline;

/// A CPU's vCPU as the recovery sees it.
pub const IDLE: u32 = 0;
/// In its exit loop: captured, resumed and watched.
pub const RUNNING: u32 = 1;
/// Its partition stopped: the CPU is parked.
pub const STOPPED: u32 = 2;

#[repr(C)]
pub struct Control {
    /// 0, or the CPU running the recovery + 1.
    pub owner: AtomicU32,
    /// CPUs (bits) that stopped and captured their vCPU.
    pub arrived: AtomicU32,
    /// Bumped when the stopped CPUs may go on.
    pub release: AtomicU32,
    /// CPUs that re-entered their vCPU loop.
    pub resumed: AtomicU32,
    pub cause: AtomicU32,
    pub cause_cpu: AtomicU32,
    pub detail: AtomicU64,
    pub pc: AtomicU64,
    pub heartbeat: [AtomicU64; MAX_CPUS],
    pub status: [AtomicU32; MAX_CPUS],
    /// The pristine image copy: where, how long, its hash at cold boot (`tandem_recovery::image`).
    pub pristine: [AtomicU64; 2],
    pub pristine_hash: AtomicU64,
    /// A code byte an injection flipped, to put back once detected: address + 1, and the byte.
    pub repair_at: AtomicU64,
    pub repair_byte: AtomicU32,
    /// Only the owner writes these, while every other CPU is stopped.
    pub timeline: Timeline,
    pub history: History,
    /// The failing CPU's panic message, if it panicked.
    pub message: [u8; 128],
    pub message_len: u32,
}

impl Control {
    pub fn status(&self, cpu: usize) -> u32 {
        self.status[cpu].load(Ordering::Acquire)
    }

    pub fn set_status(&self, cpu: usize, status: u32) {
        self.status[cpu].store(status, Ordering::Release);
    }
}
