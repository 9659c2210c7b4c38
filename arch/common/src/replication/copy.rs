//! One copy of a fault-tolerant partition across protection epochs: a primary or a backup, and a
//! backup that went live becomes the primary of the next epoch once it has re-protected the
//! partition onto the spare CPU.

use tandem_core::point::ExecPoint;
use tandem_core::replica::{Gate, Hold, Outlet, Replica};
use tandem_core::report::StopReason;
use tandem_ft::reprotect::Reprotect;

use super::{BackupCopy, Links, PrimaryCopy};

/// A re-protection in progress (`crate::reprotect`): its state machine, when it started, when
/// the guest was paused for the last pages and the vCPU state, and what carries them.
pub struct Session<K: Links> {
    pub machine: Reprotect,
    pub started_ns: u64,
    pub paused_ns: Option<u64>,
    pub transfer: K::Transfer,
}

// One per CPU, on its stack (there is no heap to box the larger primary in), and both copies'
// held or kept lines take about as much room.
#[allow(clippy::large_enum_variant)]
enum Role<K: Links> {
    Primary(PrimaryCopy<K>),
    Backup(BackupCopy<K>),
}

/// A copy of a fault-tolerant partition, as the exit loop's [`Replica`].
pub struct FtCopy<K: Links> {
    role: Role<K>,
    /// The protection epoch the copy works in.
    epoch: u32,
    /// The copy went live in an earlier epoch or this one: its failed peers' part of the run is
    /// over.
    took_over: bool,
    /// A spare waits: once live, the copy pauses at each boundary to re-protect onto it.
    spare_waits: bool,
    /// The re-protection under way.
    session: Option<Session<K>>,
    /// The boundary (deterministic-exit count) the copy last paused at: the guest runs on from
    /// there to the next before the next step.
    paused_at: Option<u64>,
}

impl<K: Links> FtCopy<K> {
    /// The primary of protection epoch `epoch`.
    pub fn primary(copy: PrimaryCopy<K>, epoch: u32) -> Self {
        Self {
            role: Role::Primary(copy),
            epoch,
            took_over: false,
            spare_waits: false,
            session: None,
            paused_at: None,
        }
    }

    /// The backup of protection epoch `epoch`; `spare` if a spare CPU waits to be re-protected
    /// onto once this copy goes live.
    pub fn backup(copy: BackupCopy<K>, epoch: u32, spare: bool) -> Self {
        Self {
            role: Role::Backup(copy),
            epoch,
            took_over: false,
            spare_waits: spare,
            session: None,
            paused_at: None,
        }
    }

    /// The protection epoch the copy works in.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The re-protection under way, if any.
    pub fn session(&mut self) -> &mut Option<Session<K>> {
        &mut self.session
    }

    /// Whether the copy is paused for re-protection: it went live and a spare waits.
    fn pausing(&self) -> bool {
        self.spare_waits && matches!(&self.role, Role::Backup(b) if b.took_over())
    }

    /// Re-protection is done: the copy goes on as `primary`, the primary of the next epoch.
    pub fn protected_by_spare(&mut self, primary: PrimaryCopy<K>) {
        self.took_over = true;
        self.spare_waits = false;
        self.session = None;
        self.epoch += 1;
        self.role = Role::Primary(primary);
    }

    /// Re-protection failed: the copy goes on alone, as the live backup it is.
    pub fn unprotected(&mut self) {
        self.spare_waits = false;
        self.session = None;
    }
}

/// Calls `$call` on the copy's primary or backup, whichever it is: a match, not a `dyn Replica`,
/// so each call inlines into the exit loop (a virtual call on every exit cost about a hundred
/// instructions per FT exit).
macro_rules! on_role {
    ($role:expr, $copy:ident => $call:expr) => {
        match $role {
            Role::Primary($copy) => $call,
            Role::Backup($copy) => $call,
        }
    };
}

impl<K: Links> Replica for FtCopy<K> {
    fn logs(&self) -> bool {
        // A live copy that will pause must still see its boundaries.
        self.pausing() || on_role!(&self.role, r => r.logs())
    }

    fn replays(&self) -> bool {
        on_role!(&self.role, r => r.replays())
    }

    fn poll_period_ns(&self) -> Option<u64> {
        on_role!(&self.role, r => r.poll_period_ns())
    }

    fn poll(&mut self, now_ns: u64, at: ExecPoint, out: &mut dyn Outlet) -> Gate {
        match on_role!(&mut self.role, r => r.poll(now_ns, at, out)) {
            Gate::Run if self.pausing() && self.paused_at != Some(at.det_exits) => {
                self.paused_at = Some(at.det_exits);
                Gate::Pause
            }
            gate => gate,
        }
    }

    fn service(&mut self, now_ns: u64, out: &mut dyn Outlet) -> Result<bool, StopReason> {
        on_role!(&mut self.role, r => r.service(now_ns, out))
    }

    fn took_over(&self) -> bool {
        self.took_over || on_role!(&self.role, r => r.took_over())
    }

    fn guest_stopped(&mut self, at: ExecPoint) {
        on_role!(&mut self.role, r => r.guest_stopped(at))
    }

    fn time_read(&mut self, at: ExecPoint, now_ns: u64) -> Result<u64, Hold> {
        on_role!(&mut self.role, r => r.time_read(at, now_ns))
    }

    fn interrupt(&mut self, at: ExecPoint, vector: u8) -> Result<(), Hold> {
        on_role!(&mut self.role, r => r.interrupt(at, vector))
    }

    fn input(&mut self, at: ExecPoint, bytes: &[u8]) -> Result<(), Hold> {
        on_role!(&mut self.role, r => r.input(at, bytes))
    }

    fn output_ready(&self, lines: usize) -> bool {
        on_role!(&self.role, r => r.output_ready(lines))
    }

    fn output(
        &mut self,
        at: ExecPoint,
        line: &[u8],
        now_ns: &dyn Fn() -> u64,
        out: &mut dyn Outlet,
    ) {
        on_role!(&mut self.role, r => r.output(at, line, now_ns, out))
    }
}
