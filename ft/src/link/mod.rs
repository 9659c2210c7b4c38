//! Log links: how frames travel from the primary to the backup and acknowledgements come back.
//!
//! The primary writes through a [`LogSender`], the backup reads through a [`LogReceiver`]. Both ends
//! deliver frames in log order, each once; the engine still validates every frame it reads. A
//! frame carries one or more records; acknowledgements count records, which the output rule is
//! about.

pub mod datagram;
pub mod ether;
pub mod ring;

/// Why a link refused an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkError {
    /// The ring or the send window is full: back off and retry after `poll`.
    Full,
    /// The frame is larger than the link carries.
    FrameTooLarge { len: usize, max: usize },
    /// The caller's buffer cannot hold the next frame.
    BufferTooSmall { need: usize, have: usize },
}

/// Counters a link keeps about its own traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Frames handed to the link (first transmissions).
    pub frames_sent: u64,
    /// Bytes of those frames.
    pub bytes_sent: u64,
    /// Frames sent again: after a timeout, or early when acks reported them missing.
    pub retransmits: u64,
    /// Those of `retransmits` sent early because acks reported the frame missing.
    pub fast_retransmits: u64,
    /// Bytes of every datagram this end put on the wire: headers, acks and retransmissions
    /// included (datagram links only).
    pub wire_bytes: u64,
    /// Frames the receiving end handed to the engine, in order.
    pub frames_delivered: u64,
    /// Acknowledgements the receiving end sent (datagram links only).
    pub acks_sent: u64,
    /// Datagrams dropped because their checksum or shape was wrong; on the ring, slots skipped
    /// for an impossible length and impossible head values seen (a producer dying mid-write).
    pub dropped_corrupt: u64,
    /// Datagrams dropped because their frame was already delivered or held.
    pub dropped_duplicate: u64,
    /// Datagrams dropped because they arrived beyond the receive window.
    pub dropped_out_of_order: u64,
    /// Datagrams dropped because they belong to another protection epoch's link.
    pub dropped_stale_epoch: u64,
}

/// The primary's end of a log link.
pub trait LogSender {
    /// Queue one encoded frame; [`LinkError::Full`] means the backup is not keeping up.
    fn send(&mut self, frame: &[u8]) -> Result<(), LinkError>;
    /// How many records the backup has acknowledged (all records with index below are held there).
    fn acked(&self) -> u64;
    /// A counter that moves whenever the backup showed signs of life.
    fn peer_activity(&self) -> u64;
    /// Advance timers (retransmission) and absorb acknowledgements; `now` in nanoseconds.
    fn poll(&mut self, now: u64);
    /// Traffic counters.
    fn stats(&self) -> LinkStats;
}

/// The backup's end of a log link.
pub trait LogReceiver {
    /// Copy the next in-order frame into `buf` and return its length, if one has arrived.
    fn recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>, LinkError>;
    /// Acknowledge receipt of the first `received` records; calling it again is the backup's
    /// heartbeat.
    fn ack(&mut self, received: u64);
    /// A counter that moves whenever the primary showed signs of life.
    fn peer_activity(&self) -> u64;
    /// Advance timers; `now` in nanoseconds.
    fn poll(&mut self, now: u64);
    /// Traffic counters.
    fn stats(&self) -> LinkStats;
}
