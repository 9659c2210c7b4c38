//! A pair across boards: the log as datagrams ([`tandem_ft::link::datagram`]) and arbitration
//! by a witness ([`tandem_ft::witness`]), both over the board's NIC, which the CPU running this
//! board's copy polls. Frames are raw Ethernet with Tandem's EtherType
//! ([`tandem_ft::link::ether`]); a frame counts only if it is addressed to this board and comes
//! from the station its channel talks to (the log and a re-protection's state: the other board;
//! arbitration: the witness). After a failover the live copy's peer becomes the spare board
//! ([`retarget`]), which it re-protects the partition onto over a link of its own ([`transfer`]).

use heapless::{Deque, Vec};
use tandem_core::config::{Ft, FtNet, FtRole, Mac};
use tandem_ft::link::datagram::{
    Datagram, DatagramConfig, DatagramReceiver, DatagramSender, MAX_DATAGRAM,
};
use tandem_ft::link::ether::{self, Channel};
use tandem_ft::link::{LinkError, LinkStats, LogReceiver, LogSender};
use tandem_ft::reprotect::transfer::Outgoing;
use tandem_ft::witness::{ClientConfig, WitnessArbiter};

use super::{BackupCopy, Injected, Links, PrimaryCopy, timing};
use crate::frames;
use crate::net::{self, BoardNic, MacFmt, Nic};

/// Frames in flight between the boards: the send window and the receive window (SACK covers
/// it).
const WINDOW: usize = 32;
/// Datagrams waiting per channel until their reader polls; more are dropped (and retransmitted
/// by the link, or asked again by the witness client).
const INBOX: usize = 16;
/// Frames taken from the NIC per poll, so a flood cannot hold the CPU.
const DRAIN: usize = 32;

/// Two boards, a witness.
pub struct AcrossBoards;

impl Links for AcrossBoards {
    type Sender = Sender;
    type Receiver = Receiver;
    type Arbiter = WitnessArbiter<Port>;
    type Transfer = Transfer;
    const WINDOW: u64 = WINDOW as u64;
    // An acknowledgement may be lost; the backup repeats them every heartbeat meanwhile.
    const LINGER: u64 = 10;

    fn tick(arbiter: &mut Self::Arbiter, now_ns: u64) {
        arbiter.tick(now_ns);
    }

    fn report(arbiter: &Self::Arbiter) {
        let link = match (SENDER.lock().as_ref(), RECEIVER.lock().as_ref()) {
            (Some(l), _) => l.stats(),
            (_, Some(l)) => l.stats(),
            _ => LinkStats::default(),
        };
        let (ignored, overflowed, nic) = WIRE
            .lock()
            .as_ref()
            .map_or((0, 0, net::NicStats::default()), |w| {
                (w.ignored, w.overflowed, w.nic.stats())
            });
        let witness = arbiter.stats();
        defmt::info!(
            "FT link: {=u64} frames sent, {=u64} delivered, {=u64} retransmitted ({=u64} fast), {=u64} acks; dropped {=u64} corrupt, {=u64} duplicate, {=u64} out of window, {=u64} of another epoch",
            link.frames_sent,
            link.frames_delivered,
            link.retransmits,
            link.fast_retransmits,
            link.acks_sent,
            link.dropped_corrupt,
            link.dropped_duplicate,
            link.dropped_out_of_order,
            link.dropped_stale_epoch
        );
        defmt::info!(
            "FT NIC: {=u64} frames sent, {=u64} received, {=u64} not sent (ring full), {=u64} receive errors; {=u64} frames for others, {=u64} dropped (inbox full); witness: {=u64} requests ({=u64} retries), {=u64} answers, {=u64} malformed, {=u64} unmatched",
            nic.sent,
            nic.received,
            nic.send_full,
            nic.rx_errors,
            ignored,
            overflowed,
            witness.requests,
            witness.retries,
            witness.answers,
            witness.malformed,
            witness.unmatched
        );
    }
}

type Payload = Vec<u8, MAX_DATAGRAM>;

/// The NIC and what arrived for each channel.
struct Wire {
    nic: BoardNic,
    me: Mac,
    peer: Mac,
    witness: Mac,
    inbox: [Deque<Payload, INBOX>; 3],
    /// Frames not for this pair (other EtherTypes, stations, channels) and frames an inbox had
    /// no room for.
    ignored: u64,
    overflowed: u64,
}

static WIRE: spin::Mutex<Option<&'static mut Wire>> = spin::Mutex::new(None);

impl Wire {
    fn inbox(channel: Channel) -> usize {
        match channel {
            Channel::Log => 0,
            Channel::Witness => 1,
            Channel::State => 2,
        }
    }

    /// The station `channel` talks to.
    fn station(&self, channel: Channel) -> Mac {
        match channel {
            Channel::Log | Channel::State => self.peer,
            Channel::Witness => self.witness,
        }
    }

    /// Sorts what the NIC received into the inboxes.
    fn pump(&mut self) {
        let mut buf = [0u8; net::MAX_FRAME];
        for _ in 0..DRAIN {
            let Some(n) = self.nic.recv(&mut buf) else {
                return;
            };
            let Some(frame) = buf.get(..n).and_then(ether::decode) else {
                self.ignored += 1;
                continue;
            };
            if !frame.is_for(self.me) || frame.src != self.station(frame.channel) {
                self.ignored += 1;
                continue;
            }
            let kept = Payload::from_slice(frame.payload)
                .ok()
                .and_then(|p| self.inbox[Self::inbox(frame.channel)].push_back(p).ok());
            if kept.is_none() {
                self.overflowed += 1;
            }
        }
    }
}

/// One channel of the board's NIC, to one station: a [`Datagram`] transport for the link or
/// the witness client.
pub struct Port {
    channel: Channel,
}

impl Datagram for Port {
    fn send(&mut self, bytes: &[u8]) {
        let mut guard = WIRE.lock();
        let Some(wire) = guard.as_mut() else {
            return;
        };
        let to = wire.station(self.channel);
        let mut frame = [0u8; net::MAX_FRAME];
        if let Some(n) = ether::encode(to, wire.me, self.channel, bytes, &mut frame) {
            // A full ring drops the frame: the link retransmits, the client asks again.
            let _ = wire.nic.send(&frame[..n]);
        }
    }

    fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        let mut guard = WIRE.lock();
        let wire = guard.as_mut()?;
        let inbox = Wire::inbox(self.channel);
        if wire.inbox[inbox].is_empty() {
            wire.pump();
        }
        let payload = wire.inbox[inbox].pop_front()?;
        let n = payload.len().min(buf.len());
        buf[..n].copy_from_slice(&payload[..n]);
        Some(n)
    }
}

// The link's ends hold a window of frames each (some 17 KiB for the sender): they live in frames
// of their own ([`frames::leak`]) rather than in the copy on its CPU's stack or in the image,
// and the copy holds a handle.
static SENDER: spin::Mutex<Option<&'static mut DatagramSender<Port, WINDOW>>> =
    spin::Mutex::new(None);
static RECEIVER: spin::Mutex<Option<&'static mut DatagramReceiver<Port, WINDOW>>> =
    spin::Mutex::new(None);

/// The primary's end of the link ([`SENDER`]).
pub struct Sender;

/// The backup's end of the link ([`RECEIVER`]).
pub struct Receiver;

impl LogSender for Sender {
    fn send(&mut self, frame: &[u8]) -> Result<(), LinkError> {
        SENDER.lock().as_mut().ok_or(LinkError::Full)?.send(frame)
    }

    fn acked(&self) -> u64 {
        SENDER.lock().as_ref().map_or(0, |l| l.acked())
    }

    fn peer_activity(&self) -> u64 {
        SENDER.lock().as_ref().map_or(0, |l| l.peer_activity())
    }

    fn poll(&mut self, now: u64) {
        if let Some(l) = SENDER.lock().as_mut() {
            l.poll(now);
        }
    }

    fn stats(&self) -> LinkStats {
        SENDER
            .lock()
            .as_ref()
            .map(|l| l.stats())
            .unwrap_or_default()
    }
}

impl LogReceiver for Receiver {
    fn recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>, LinkError> {
        RECEIVER.lock().as_mut().map_or(Ok(None), |l| l.recv(buf))
    }

    fn ack(&mut self, received: u64) {
        if let Some(l) = RECEIVER.lock().as_mut() {
            l.ack(received);
        }
    }

    fn peer_activity(&self) -> u64 {
        RECEIVER.lock().as_ref().map_or(0, |l| l.peer_activity())
    }

    fn poll(&mut self, now: u64) {
        if let Some(l) = RECEIVER.lock().as_mut() {
            l.poll(now);
        }
    }

    fn stats(&self) -> LinkStats {
        RECEIVER
            .lock()
            .as_ref()
            .map(|l| l.stats())
            .unwrap_or_default()
    }
}

/// Whether a frame of the log from the other board waits (left for the link to take): the
/// receiver reads the network only when the engine asks it for frames.
fn heard_from_peer() -> bool {
    let mut guard = WIRE.lock();
    let Some(wire) = guard.as_mut() else {
        return false;
    };
    let log = Wire::inbox(Channel::Log);
    if wire.inbox[log].is_empty() {
        wire.pump();
    }
    !wire.inbox[log].is_empty()
}

/// Why this board's copy cannot join its pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum Refused {
    /// The board's NIC did not come up, or another copy took it.
    NoNic,
    /// The board's NIC is none of the pair's boards: the image was flashed to the wrong board.
    NotInPair,
    /// No frames left for the link's state.
    OutOfFrames,
    /// A spare restored from a re-protection never heard from the copy that sent it.
    NoMeeting,
}

/// How a backup meets its primary before it replays.
pub enum Meeting<'a> {
    /// At boot: boards boot at different speeds, and a backup that waited long enough goes on
    /// without (its primary is then suspected like any silent one).
    AtBoot,
    /// A spare restored from a re-protection, calling the closure each turn (its state link goes
    /// on answering meanwhile). It never goes on without: the copy that sent it may have given
    /// up and run on in the epoch before, and a spare that then went live would make two.
    AsSpare(&'a mut dyn FnMut(u64)),
}

/// Takes the board's NIC for the pair `net` describes; returns this board's role in it.
pub fn attach(net: &FtNet) -> Result<FtRole, Refused> {
    let nic = net::take().ok_or(Refused::NoNic)?;
    let me = nic.mac();
    let Some((role, peer)) = net.role_of(me) else {
        defmt::error!(
            "FT: this board's NIC {} is none of the pair's boards (primary {}, backup {})",
            MacFmt(me),
            MacFmt(net.primary),
            MacFmt(net.backup)
        );
        return Err(Refused::NotInPair);
    };
    defmt::info!(
        "FT across boards: this board ({}) runs the {}, its peer is {}, the witness {}",
        MacFmt(me),
        defmt::Debug2Format(&role),
        MacFmt(peer),
        MacFmt(net.witness)
    );
    let wire = frames::leak(Wire {
        nic,
        me,
        peer,
        witness: net.witness,
        inbox: [const { Deque::new() }; 3],
        ignored: 0,
        overflowed: 0,
    })
    .map_err(|_| Refused::OutOfFrames)?;
    *WIRE.lock() = Some(wire);
    Ok(role)
}

/// Makes `peer` the board this one's log and state channels talk to: the spare, once the copy
/// that went live re-protects onto it. Frames from the failed peer are ignored from now on.
pub fn retarget(peer: Mac) {
    if let Some(wire) = WIRE.lock().as_mut() {
        wire.peer = peer;
        wire.inbox[Wire::inbox(Channel::Log)].clear();
    }
}

/// Pages a re-protection step queues at most: the machine's chunk.
pub const TRANSFER_QUEUE: usize = 64;
/// Frames of a re-protection in flight. Fewer than the log's: the transfer is a stream of full
/// frames, and a receiver that takes them more slowly than they come (Bochs's e1000 takes about
/// one a millisecond) queues them in front of itself; with a whole log window in that queue
/// each frame waited past its retransmission timeout, and resends multiplied the queue (186
/// frames took 2,290 sends).
const TRANSFER_WINDOW: usize = 8;
/// Heartbeat periods a frame of the transfer waits for its acknowledgement before it is resent.
const TRANSFER_RESEND_BEATS: u64 = 8;

/// A re-protection's sending end to the spare board: a link of its own on the state channel, in
/// the new epoch, and the frames queued for it. Both live in frames of their own.
pub struct Transfer {
    pub link: &'static mut DatagramSender<Port, TRANSFER_WINDOW>,
    pub out: &'static mut Outgoing<TRANSFER_QUEUE>,
    /// The spare's activity as the link last counted it, and when that changed: a spare that
    /// stays silent this long with frames unacknowledged has failed.
    pub heard: (u64, u64),
}

/// The sending end of a re-protection in `epoch`, starting at `now_ns`.
pub fn transfer(ft: &Ft, epoch: u32, now_ns: u64) -> Result<Transfer, Refused> {
    let port = Port {
        channel: Channel::State,
    };
    let link = frames::leak(DatagramSender::new(port, transfer_config(ft, epoch)))
        .map_err(|_| Refused::OutOfFrames)?;
    let out = frames::leak(Outgoing::new()).map_err(|_| Refused::OutOfFrames)?;
    Ok(Transfer {
        link,
        out,
        heard: (0, now_ns),
    })
}

/// The spare's receiving end of a re-protection in `epoch`.
pub fn transfer_receiver(
    ft: &Ft,
    epoch: u32,
) -> Result<&'static mut DatagramReceiver<Port, TRANSFER_WINDOW>, Refused> {
    let port = Port {
        channel: Channel::State,
    };
    frames::leak(DatagramReceiver::new(port, transfer_config(ft, epoch)))
        .map_err(|_| Refused::OutOfFrames)
}

fn transfer_config(ft: &Ft, epoch: u32) -> DatagramConfig {
    let (heartbeat, _) = timing(ft);
    DatagramConfig::new(epoch, heartbeat.saturating_mul(TRANSFER_RESEND_BEATS))
}

fn link_config(ft: &Ft, epoch: u32) -> DatagramConfig {
    // A frame unacknowledged for a heartbeat period is sent again (backing off): the backup
    // acknowledges at least that often.
    let (heartbeat, _) = timing(ft);
    DatagramConfig::new(epoch, heartbeat)
}

fn witness(net: &FtNet, ft: &Ft, me: Mac, now_ns: u64) -> WitnessArbiter<Port> {
    let (heartbeat, _) = timing(ft);
    let mac = me.0.iter().fold(0u64, |a, &b| a << 8 | u64::from(b));
    WitnessArbiter::new(
        Port {
            channel: Channel::Witness,
        },
        ClientConfig {
            cluster: net.cluster,
            retry_ns: 4 * heartbeat,
            nonce_seed: mac ^ now_ns.rotate_left(17),
        },
    )
}

fn my_mac() -> Mac {
    WIRE.lock().as_ref().map_or(Mac([0; 6]), |w| w.me)
}

/// How often a copy waiting for the other board at boot looks at the NIC.
const BOOT_POLL_NS: u64 = 1_000_000;

/// Waits, up to `limit_ns` after `now()` first says, until `heard()` (the other board showed
/// itself), calling `poke` each turn; whether it did. Between turns the CPU idles
/// (`idle_until`): an emulator whose CPU spins may not get round to delivering frames.
fn wait_for_peer(
    now: &dyn Fn() -> u64,
    limit_ns: u64,
    mut poke: impl FnMut(u64),
    heard: impl Fn() -> bool,
    idle_until: &dyn Fn(u64),
) -> bool {
    let start = now();
    loop {
        let t = now();
        poke(t);
        if heard() {
            return true;
        }
        if t.saturating_sub(start) > limit_ns {
            return false;
        }
        idle_until(t.saturating_add(BOOT_POLL_NS));
    }
}

/// How long a copy waits at boot for the other board before it goes on without (and the other
/// is then suspected like any silent peer): generous, boards boot at different speeds.
pub fn boot_wait(ft: &Ft) -> u64 {
    let (_, suspect) = timing(ft);
    suspect.saturating_mul(50)
}

/// The primary on this board: waits for the backup's first acknowledgement (or gives up after
/// [`boot_wait`]), calling `also` each turn, then records.
#[allow(clippy::too_many_arguments)]
pub fn primary(
    ft: &Ft,
    net: &FtNet,
    epoch: u32,
    now: &dyn Fn() -> u64,
    idle_until: &dyn Fn(u64),
    also: &mut dyn FnMut(u64),
    injected: Injected,
    die: fn() -> !,
) -> Result<PrimaryCopy<AcrossBoards>, Refused> {
    *SENDER.lock() = frames::leak(DatagramSender::new(
        Port {
            channel: Channel::Log,
        },
        link_config(ft, epoch),
    ))
    .map_err(|_| Refused::OutOfFrames)
    .map(Some)?;
    let met = wait_for_peer(
        now,
        boot_wait(ft),
        |t| {
            also(t);
            Sender.poll(t);
        },
        || Sender.peer_activity() > 0,
        idle_until,
    );
    report_meeting(met, "backup");
    let arbiter = witness(net, ft, my_mac(), now());
    Ok(PrimaryCopy::over(
        Sender,
        arbiter,
        ft,
        epoch,
        now(),
        injected,
        die,
    ))
}

/// The backup on this board: acknowledges (its heartbeat) until the primary's first frame (or
/// gives up after [`boot_wait`], as `meeting` says), then replays.
#[allow(clippy::too_many_arguments)]
pub fn backup(
    ft: &Ft,
    net: &FtNet,
    epoch: u32,
    now: &dyn Fn() -> u64,
    idle_until: &dyn Fn(u64),
    mut meeting: Meeting<'_>,
    injected: Injected,
) -> Result<BackupCopy<AcrossBoards>, Refused> {
    *RECEIVER.lock() = frames::leak(DatagramReceiver::new(
        Port {
            channel: Channel::Log,
        },
        link_config(ft, epoch),
    ))
    .map_err(|_| Refused::OutOfFrames)
    .map(Some)?;
    let (heartbeat, _) = timing(ft);
    let mut last_ack: Option<u64> = None;
    let met = wait_for_peer(
        now,
        boot_wait(ft),
        |t| {
            if let Meeting::AsSpare(also) = &mut meeting {
                also(t);
            }
            if last_ack.is_none_or(|at| t.saturating_sub(at) >= heartbeat) {
                Receiver.ack(0);
                last_ack = Some(t);
            }
            Receiver.poll(t);
        },
        heard_from_peer,
        idle_until,
    );
    if !met && matches!(meeting, Meeting::AsSpare(_)) {
        return Err(Refused::NoMeeting);
    }
    report_meeting(met, "primary");
    let arbiter = witness(net, ft, my_mac(), now());
    Ok(BackupCopy::over(
        Receiver,
        arbiter,
        ft,
        epoch,
        now(),
        injected,
    ))
}

fn report_meeting(met: bool, peer: &str) {
    if met {
        defmt::info!("FT across boards: the {=str} answered", peer);
    } else {
        defmt::warn!(
            "FT across boards: no word from the {=str} at boot; going on without it",
            peer
        );
    }
}
