//! What handling one exit decided: the completion the backend applies at the commit, and what
//! the vCPU does next. Exit handlers (`dispatch`) produce it; the exit loop (`runtime`) applies it.

use crate::devices::vgic::GicWrite;
use crate::report::StopReason;
use crate::vcpu::{Completion, Vcpu};

/// What the vCPU does after an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Enter the guest again.
    Continue,
    /// The exit was not completed and is not counted: the guest executes the instruction again
    /// (an input or output the replica cannot take yet).
    Retry,
    /// Idle until an interrupt can be delivered (HLT / WFI).
    WaitForInterrupt,
    /// The partition stops, for this reason.
    Stop(StopReason),
}

/// The result of handling one exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Applied by the backend as the exit's last step; `None` leaves the guest as it is.
    pub completion: Option<Completion>,
    /// A register write to the vCPU's emulated GIC, applied at the commit.
    pub gic: Option<GicWrite>,
    /// What follows.
    pub next: Next,
}

impl Outcome {
    pub(crate) fn done(completion: Completion) -> Self {
        Self {
            completion: Some(completion),
            gic: None,
            next: Next::Continue,
        }
    }
    pub(crate) fn nothing() -> Self {
        Self {
            completion: None,
            gic: None,
            next: Next::Continue,
        }
    }
    pub(crate) fn retry() -> Self {
        Self {
            completion: None,
            gic: None,
            next: Next::Retry,
        }
    }
    pub(crate) fn stop(reason: StopReason) -> Self {
        Self {
            completion: None,
            gic: None,
            next: Next::Stop(reason),
        }
    }

    /// Makes the exit's guest-visible effects, together and last: the device state change, then
    /// the completion of the guest's instruction.
    // Inlined into each instance of the exit loop (one per replica kind): outlined, it
    // measurably slows every exit.
    #[inline(always)]
    pub fn commit<V: Vcpu>(&self, vcpu: &mut V) {
        if let (Some(write), Some(gic)) = (self.gic, vcpu.virtual_gic()) {
            gic.apply(write);
        }
        if let Some(completion) = self.completion {
            vcpu.complete(completion);
        }
    }
}
