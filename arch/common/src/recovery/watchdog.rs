//! The hang watchdog (recovery.md 5.4): every CPU running a vCPU beats a heartbeat in the ledger
//! on each pass through its exit loop (exits and idle slices, which recovery bounds to half the
//! watchdog period), and watches its buddy, the next such CPU: a buddy whose heartbeat stood
//! still for three periods is hung, and this CPU starts the recovery, whose stop request (an NMI
//! on x86) reaches even a CPU looping with interrupts masked. After a recovery the same pass
//! audits the resumed vCPU: it reports once that it is making progress again.

use core::cell::Cell;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use tandem_core::config::{MAX_CPUS, System};
use tandem_recovery::cause::Detected;

use super::control::RUNNING;
use super::{STRIKES, WATCHDOG_NS, armed, control};
use crate::backend::Backend;

/// One CPU's watchdog and audit state (scratch: a recovery starts it afresh).
#[derive(Default)]
pub struct Watch {
    beats: Cell<u64>,
    next_check_ns: Cell<u64>,
    buddy: Cell<usize>,
    seen: Cell<u64>,
    strikes: Cell<u32>,
    /// Beats at which a resumed vCPU's audit started, + 1 (0: no audit pending).
    audit_from: Cell<u64>,
}

/// Beats between two looks at the clock, which costs more than the rest of a short exit.
const CHECK_EVERY: u64 = 16;

impl Watch {
    /// The vCPU was resumed by a recovery: audit its progress.
    pub fn audit(&self) {
        self.audit_from.set(self.beats.get() + 1);
    }

    /// Whether a recovery resumed this vCPU and it has not shown progress yet.
    pub fn auditing(&self) -> bool {
        self.audit_from.get() != 0
    }

    /// A pass through CPU `cpu`'s exit loop, in partition `partition` of `system`.
    #[inline(always)]
    pub fn beat<B: Backend>(&self, cpu: usize, system: &System, partition: usize) {
        if armed() {
            self.armed_beat::<B>(cpu, system, partition);
        }
    }

    fn armed_beat<B: Backend>(&self, cpu: usize, system: &System, partition: usize) {
        let Some(control) = control() else { return };
        let beats = self.beats.get() + 1;
        self.beats.set(beats);
        control.heartbeat[cpu].store(beats, Ordering::Relaxed);
        B::inject_at(cpu, beats);
        if self.audit_from.get() != 0 && beats > self.audit_from.get() + 1 {
            defmt::info!(
                "recovery audit: partition {=str} made progress ({=u64} exits since resume)",
                system.partitions[partition].name.as_str(),
                beats - self.audit_from.get()
            );
            self.audit_from.set(0);
        }
        if !beats.is_multiple_of(CHECK_EVERY) {
            return;
        }
        let now = B::recovery_now_ns();
        if now < self.next_check_ns.get() {
            return;
        }
        self.next_check_ns.set(now.saturating_add(WATCHDOG_NS));
        let Some(buddy) = (1..MAX_CPUS)
            .map(|i| (cpu + i) % MAX_CPUS)
            .find(|&c| control.status(c) == RUNNING)
        else {
            return;
        };
        let theirs = control.heartbeat[buddy].load(Ordering::Relaxed);
        if buddy != self.buddy.get() || theirs != self.seen.get() {
            self.buddy.set(buddy);
            self.seen.set(theirs);
            self.strikes.set(0);
            return;
        }
        self.strikes.set(self.strikes.get() + 1);
        if self.strikes.get() >= STRIKES {
            B::detected(Detected::Hang, buddy as u64, 0);
        }
    }
}

/// The last heartbeat each CPU saw of itself at a watchdog tick, and the ticks it stood still.
static LAST: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static STALE: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

/// A tick no masking holds off (x86's NMI, aarch64's Group 0 FIQ) on CPU `cpu`: whether its own
/// heartbeat stood still for the strike count while it runs a vCPU and no recovery is under way.
pub fn stale_on_tick(cpu: usize) -> bool {
    let Some(control) = control() else {
        return false;
    };
    if control.status(cpu) != RUNNING || super::owner().is_some() {
        STALE[cpu].store(0, Ordering::Relaxed);
        return false;
    }
    let beat = control.heartbeat[cpu].load(Ordering::Relaxed);
    if beat != LAST[cpu].swap(beat, Ordering::Relaxed) {
        STALE[cpu].store(0, Ordering::Relaxed);
        return false;
    }
    STALE[cpu].fetch_add(1, Ordering::Relaxed) + 1 >= STRIKES
}
