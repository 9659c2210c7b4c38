//! Re-protection: creating a new backup from a running primary. Memory is copied while the guest
//! runs, pages it dirties meanwhile are copied again in rounds, and a short final pause copies the
//! last dirty pages and the vCPU and device state. The backend tracks dirty pages (EPT / stage-2)
//! behind [`DirtyTracker`] and moves the bytes; this state machine decides what to send when.
//! Across boards, [`transfer`] carries them as frames.

pub mod transfer;

/// Dirty-page tracking the backend provides.
pub trait DirtyTracker {
    /// Guest pages in the partition.
    fn page_count(&self) -> u64;
    /// Start tracking writes from now on (clears the dirty set).
    fn start_tracking(&mut self);
    /// Move up to `out.len()` dirty page numbers into `out`, clearing them; returns how many.
    fn take_dirty(&mut self, out: &mut [u64]) -> usize;
    /// Pages dirty now.
    fn dirty_count(&self) -> u64;
}

/// Re-protection settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReprotectConfig {
    /// Pages per full-copy step.
    pub chunk_pages: u64,
    /// Pause once no more than this many pages are dirty...
    pub pause_below: u64,
    /// ...or after this many re-send rounds, whichever comes first.
    pub max_rounds: u32,
    /// Protection epoch the new pair will use.
    pub new_epoch: u32,
}

/// What the backend must do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReprotectAction {
    /// Send pages `first..first + count` (the guest keeps running).
    SendRange { first: u64, count: u64 },
    /// Send the `count` pages listed at the start of the caller's buffer.
    SendDirty { count: usize },
    /// Pause the guest's vCPUs now.
    Pause,
    /// Send the vCPU and device state (guest paused).
    SendDeviceState,
    /// The backup is complete: start logging in `epoch` from this point and resume the guest.
    Resume { epoch: u32 },
    /// Nothing left to do.
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    FullCopy {
        next: u64,
    },
    /// Re-send round `round`, with `left` of the pages dirty at its start still to send.
    Rounds {
        round: u32,
        left: u64,
    },
    Paused,
    DeviceStateSent,
    Done,
}

/// Counters for measurement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReprotectStats {
    /// Pages sent in total (including re-sends).
    pub pages_sent: u64,
    /// Re-send rounds while running.
    pub rounds: u32,
    /// Pages sent while paused.
    pub paused_pages: u64,
}

/// The re-protection state machine. The tracker is passed to each call rather than kept, so a
/// backend whose tracking lives in a vCPU it runs in between can lend it for the step.
pub struct Reprotect {
    config: ReprotectConfig,
    phase: Phase,
    stats: ReprotectStats,
}

impl Reprotect {
    /// Begin: dirty tracking starts now, before the first page is copied.
    pub fn start(tracker: &mut impl DirtyTracker, config: ReprotectConfig) -> Self {
        tracker.start_tracking();
        Self {
            config,
            phase: Phase::FullCopy { next: 0 },
            stats: ReprotectStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> ReprotectStats {
        self.stats
    }

    /// The next action; dirty page numbers are written to `buf` for [`ReprotectAction::SendDirty`].
    pub fn step(&mut self, tracker: &mut impl DirtyTracker, buf: &mut [u64]) -> ReprotectAction {
        match self.phase {
            Phase::FullCopy { next } => {
                let count = self
                    .config
                    .chunk_pages
                    .min(tracker.page_count().saturating_sub(next));
                self.stats.pages_sent += count;
                self.phase = if next + count >= tracker.page_count() {
                    Phase::Rounds { round: 0, left: 0 }
                } else {
                    Phase::FullCopy { next: next + count }
                };
                ReprotectAction::SendRange { first: next, count }
            }
            Phase::Rounds { round, left: 0 } => {
                // A new round: pause if the dirty set is small enough (or we stop converging),
                // otherwise re-send the pages dirty now, and only those, before looking again.
                let dirty = tracker.dirty_count();
                if dirty <= self.config.pause_below || round >= self.config.max_rounds {
                    self.phase = Phase::Paused;
                    return ReprotectAction::Pause;
                }
                self.stats.rounds = round + 1;
                self.phase = Phase::Rounds {
                    round: round + 1,
                    left: dirty,
                };
                self.step(tracker, buf)
            }
            Phase::Rounds { round, left } => {
                let want = (buf.len() as u64).min(left) as usize;
                let count = tracker.take_dirty(&mut buf[..want]);
                self.stats.pages_sent += count as u64;
                let left = if count == 0 { 0 } else { left - count as u64 };
                self.phase = Phase::Rounds { round, left };
                if count == 0 {
                    return self.step(tracker, buf);
                }
                ReprotectAction::SendDirty { count }
            }
            Phase::Paused => {
                let count = tracker.take_dirty(buf);
                if count == 0 {
                    self.phase = Phase::DeviceStateSent;
                    return ReprotectAction::SendDeviceState;
                }
                self.stats.pages_sent += count as u64;
                self.stats.paused_pages += count as u64;
                ReprotectAction::SendDirty { count }
            }
            Phase::DeviceStateSent => {
                self.phase = Phase::Done;
                ReprotectAction::Resume {
                    epoch: self.config.new_epoch,
                }
            }
            Phase::Done => ReprotectAction::Done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Guest memory of `pages` one-word pages that a running guest writes to.
    struct FakeMemory {
        pages: Vec<u64>,
        dirty: BTreeSet<u64>,
    }

    impl FakeMemory {
        fn write(&mut self, page: u64, value: u64) {
            self.pages[page as usize] = value;
            self.dirty.insert(page);
        }
    }

    impl DirtyTracker for &mut FakeMemory {
        fn page_count(&self) -> u64 {
            self.pages.len() as u64
        }
        fn start_tracking(&mut self) {
            self.dirty.clear();
        }
        fn take_dirty(&mut self, out: &mut [u64]) -> usize {
            let taken: Vec<u64> = self.dirty.iter().take(out.len()).copied().collect();
            for (slot, page) in out.iter_mut().zip(&taken) {
                *slot = *page;
                self.dirty.remove(page);
            }
            taken.len()
        }
        fn dirty_count(&self) -> u64 {
            self.dirty.len() as u64
        }
    }

    #[test]
    fn copy_converges_to_an_identical_image_with_a_short_pause() {
        let mut memory = FakeMemory {
            pages: (0..1024).collect(),
            dirty: BTreeSet::new(),
        };
        let mut copy = vec![0u64; 1024];
        let mut machine = Reprotect::start(
            &mut &mut memory,
            ReprotectConfig {
                chunk_pages: 64,
                pause_below: 8,
                max_rounds: 10,
                new_epoch: 2,
            },
        );
        let mut buf = [0u64; 16];
        let mut paused = false;
        let mut tick = 0u64;
        loop {
            // While running, the guest writes a hot set of pages, shrinking as it settles.
            if !paused {
                tick += 1;
                let hot = 64 / tick.min(32);
                for i in 0..hot {
                    let page = (tick * 7 + i * 13) % 1024;
                    memory.write(page, tick * 1000 + i);
                }
            }
            match machine.step(&mut &mut memory, &mut buf) {
                ReprotectAction::SendRange { first, count } => {
                    let src = &memory.pages;
                    copy[first as usize..(first + count) as usize]
                        .copy_from_slice(&src[first as usize..(first + count) as usize]);
                }
                ReprotectAction::SendDirty { count } => {
                    for &page in &buf[..count] {
                        copy[page as usize] = memory.pages[page as usize];
                    }
                }
                ReprotectAction::Pause => paused = true,
                ReprotectAction::SendDeviceState => assert!(paused),
                ReprotectAction::Resume { epoch } => {
                    assert_eq!(epoch, 2);
                    break;
                }
                ReprotectAction::Done => unreachable!("resume comes first"),
            }
        }
        let stats = machine.stats();
        assert_eq!(
            machine.step(&mut &mut memory, &mut buf),
            ReprotectAction::Done
        );
        assert_eq!(copy, memory.pages, "backup image differs from the primary");
        assert!(
            stats.paused_pages <= 16,
            "pause copied {} pages",
            stats.paused_pages
        );
        assert!(stats.rounds >= 1);
    }
}
