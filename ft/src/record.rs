//! What the log holds: one record per non-deterministic input, output or control event.

use crate::check::LoggedPoint;

/// Largest device input carried by one record; a device model splits larger input.
pub const MAX_INPUT: usize = 256;

/// Device input bytes carried inline in a record.
pub type InputData = heapless::Vec<u8, MAX_INPUT>;

/// One logged event.
// Records are fixed-size by design (no allocator): input bytes travel inline.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A trapped time read at a deterministic exit, with the value the guest saw.
    TimeRead { value: u64 },
    /// A trapped random-number read at a deterministic exit.
    RandomRead { value: u64 },
    /// A virtual interrupt injected at the record's point.
    Interrupt { vector: u32 },
    /// Device input (bytes or a frame) made visible to the guest at the record's point.
    Input { device: u16, data: InputData },
    /// The guest produced external output number `seq`; `digest` identifies its content.
    Output { seq: u64, digest: u64 },
    /// Output `seq` has been performed by the primary.
    OutputDone { seq: u64 },
    /// Liveness and progress marker; `now` is the primary's clock (for lag measurement).
    Heartbeat { now: u64 },
    /// Protocol control.
    Control(Control),
}

/// Control records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// The sender has gone live (informational for a witness or a later backup).
    GoLive { epoch: u32 },
    /// A new backup is being synchronised for `epoch` (re-protection).
    Resync { epoch: u32 },
}

/// How the backup treats an event when replaying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventClass {
    /// Consumed by a deterministic exit (the guest asks for it): time and random reads.
    Sync,
    /// Delivered to the guest at the recorded point: interrupts and input.
    Async,
    /// Checked against the backup's own output, then suppressed.
    Output,
    /// Protocol bookkeeping, invisible to the guest.
    Bookkeeping,
}

impl Event {
    /// The replay class of this event.
    pub fn class(&self) -> EventClass {
        match self {
            Event::TimeRead { .. } | Event::RandomRead { .. } => EventClass::Sync,
            Event::Interrupt { .. } | Event::Input { .. } => EventClass::Async,
            Event::Output { .. } => EventClass::Output,
            Event::OutputDone { .. } | Event::Heartbeat { .. } | Event::Control(_) => {
                EventClass::Bookkeeping
            }
        }
    }
}

/// A logged event and the execution point where it happened, as the log carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Where the event happened (for bookkeeping: the primary's latest point).
    pub point: LoggedPoint,
    /// What happened.
    pub event: Event,
}
