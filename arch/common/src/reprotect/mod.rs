//! Re-protection: the copy of a fault-tolerant partition that went live copies itself onto a
//! spare while its guest runs, pausing it only for the last pages and the vCPU state, and goes
//! on as the primary of the next protection epoch once the spare replays as its backup.
//!
//! The copy runs in steps at the guest's deterministic exit boundaries (the copy's replica
//! pauses the vCPU at each, `FtCopy`), as `tandem_ft::reprotect` orders them: every page once
//! while the backend tracks which pages the guest writes meanwhile (second-stage write
//! protection), then rounds of the pages written since, then the pause: the pages still dirty,
//! the vCPU state and the record. Onto a spare CPU of the same board ([`on_board`]) they are
//! copied; onto a spare board ([`across_boards`]) they travel over the network.

pub mod across_boards;
mod on_board;

use tandem_ft::reprotect::{DirtyTracker, Reprotect, ReprotectConfig};

use crate::backend::Backend;

pub use on_board::{has_spare, reprotect, wait_as_spare};

/// The backend's dirty-page tracking of a vCPU's partition, lent to the state machine for a step.
struct Tracker<'a, B: Backend> {
    vcpu: &'a mut B::Vcpu,
    pages: u64,
    failed: bool,
}

impl<B: Backend> Tracker<'_, B> {
    /// Starts the re-protection machine, with the backend tracking writes from now on; `None`
    /// if tracking cannot start.
    fn start(&mut self, config: ReprotectConfig) -> Option<Reprotect> {
        let machine = Reprotect::start(self, config);
        (!self.failed).then_some(machine)
    }
}

impl<B: Backend> DirtyTracker for Tracker<'_, B> {
    fn page_count(&self) -> u64 {
        self.pages
    }
    fn start_tracking(&mut self) {
        match B::start_dirty_tracking(self.vcpu) {
            Ok(pages) => self.pages = pages,
            Err(e) => {
                defmt::error!("FT re-protection: dirty-page tracking cannot start: {}", e);
                self.failed = true;
            }
        }
    }
    fn take_dirty(&mut self, out: &mut [u64]) -> usize {
        B::take_dirty(self.vcpu, out)
    }
    fn dirty_count(&self) -> u64 {
        B::dirty_count(self.vcpu)
    }
}
