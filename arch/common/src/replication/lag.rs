//! How far a backup lags its primary in time: the primary notes when it passes each deterministic
//! exit boundary, and the backup, arriving at the same boundary, how long ago that was. A
//! measurement only (`cargo xtask bench` reports it); nothing depends on it.

use core::sync::atomic::{AtomicU64, Ordering};

use tandem_core::config::MAX_FT_PAIRS;
use tandem_ft::latency::Latencies;

/// Boundaries remembered per pair: a backup further behind than this is not measured.
const SLOTS: usize = 1024;
/// Each slot packs the boundary's low bits over the time's low bits, so one atomic load reads a
/// consistent pair: 2^40 ns is over 18 minutes, far more than a lag.
const TIME_BITS: u32 = 40;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;

static PASSED: [[AtomicU64; SLOTS]; MAX_FT_PAIRS] =
    [const { [const { AtomicU64::new(0) }; SLOTS] }; MAX_FT_PAIRS];

fn slot(pair: usize, exit: u64) -> Option<&'static AtomicU64> {
    PASSED.get(pair)?.get(exit as usize % SLOTS)
}

/// The low bits of boundary `exit`, above the time's.
fn tag(exit: u64) -> u64 {
    exit << TIME_BITS
}

/// The primary of pair `pair` passes boundary `exit` at `now_ns`.
pub fn passed(pair: usize, exit: u64, now_ns: u64) {
    if let Some(slot) = slot(pair, exit) {
        slot.store(tag(exit) | (now_ns & TIME_MASK), Ordering::Relaxed);
    }
}

/// What the backup of one pair has measured.
pub struct LagMeter {
    pair: usize,
    last: Option<u64>,
    lags: Latencies,
}

impl LagMeter {
    pub fn new(pair: usize) -> Self {
        Self {
            pair,
            last: None,
            lags: Latencies::new(),
        }
    }

    /// The backup arrives at boundary `exit` at `now_ns` (again, while it waits there: measured
    /// once).
    pub fn arrived(&mut self, exit: u64, now_ns: u64) {
        if self.last == Some(exit) {
            return;
        }
        self.last = Some(exit);
        let Some(slot) = slot(self.pair, exit) else {
            return;
        };
        let seen = slot.load(Ordering::Relaxed);
        // 0: never written (the primary's first boundary is never at time 0).
        if seen != 0 && seen & !TIME_MASK == tag(exit) {
            self.lags.record((now_ns.wrapping_sub(seen)) & TIME_MASK);
        }
    }

    pub fn report(&self) {
        if self.lags.samples() > 0 {
            defmt::info!(
                "FT backup lag behind the primary: {=u64} boundaries, p50 {=u64} ns, p99 {=u64} ns, at most {=u64} ns",
                self.lags.samples(),
                self.lags.percentile(500),
                self.lags.percentile(990),
                self.lags.max()
            );
        }
    }
}
