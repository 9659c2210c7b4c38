//! What handling one exit decided: the completion the backend applies at the commit, and what
//! the vCPU does next. Exit handlers (`dispatch`) produce it; the exit loop (`runtime`) applies it.

use crate::report::StopReason;
use crate::vcpu::Completion;

/// What the vCPU does after an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Enter the guest again.
    Continue,
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
    /// What follows.
    pub next: Next,
}

impl Outcome {
    pub(crate) fn done(completion: Completion) -> Self {
        Self {
            completion: Some(completion),
            next: Next::Continue,
        }
    }
    pub(crate) fn nothing() -> Self {
        Self {
            completion: None,
            next: Next::Continue,
        }
    }
    pub(crate) fn stop(reason: StopReason) -> Self {
        Self {
            completion: None,
            next: Next::Stop(reason),
        }
    }
}
