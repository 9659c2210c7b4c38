//! The machine's console line, switched between partitions at run time.
//!
//! The hypervisor reads the physical UART's receive side and hands what arrives to one partition,
//! the *target*: first the configuration's `console_input` (or none), then whichever the user
//! chooses with a key sequence ([`Keys`]): Ctrl-T ([`ESCAPE`]) and then
//!
//! | key | effect |
//! |---|---|
//! | `1`..`9` | route input to partition N (in configuration order; the copies of a fault-tolerant partition are one) |
//! | `n` | route input to the next running partition |
//! | `?` | list the partitions and the keys |
//! | Ctrl-T | send one literal Ctrl-T (0x14) to the target |
//! | `q` | nothing here: `cargo xtask qemu` ends its run at this sequence |
//! | anything else | both bytes go to the target, as typed |
//!
//! [`Switch`] applies the sequences and keeps one bounded queue per partition. Every byte is
//! hostile: nothing panics, nothing grows, and a byte typed while partition A is the target is
//! queued for A or dropped (and said), never given to another. A stopped partition cannot be
//! chosen; while there is no target, typed bytes are dropped until the user chooses one.
//!
//! Fault tolerance: the switch only decides which partition's queue a byte joins. A replicated
//! partition takes bytes from its queue at a deterministic exit boundary and logs them there
//! ([`crate::runtime`]), so switching never reaches the backup except through the log.

use core::fmt;

use crate::config::{FtRole, MAX_PARTITIONS, System};

/// Ctrl-T: starts a key sequence. (Ctrl-A is QEMU's own mux escape; Ctrl-T is rarely needed
/// in a shell, and Ctrl-T Ctrl-T still sends one.)
pub const ESCAPE: u8 = 0x14;

/// The highest partition number a single key chooses.
pub const DIGITS: u8 = 9;

/// What a key sequence asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Route input to partition N (1-based, as typed: `0` and numbers beyond the partitions are
    /// refused).
    Select(u8),
    /// Route input to the next running partition.
    Next,
    /// List the partitions and the keys.
    List,
    /// End the emulator run (`cargo xtask qemu` acts on it; the hypervisor only says so).
    Quit,
}

impl Command {
    /// The command of the key typed after [`ESCAPE`], if it is one.
    pub fn of(key: u8) -> Option<Self> {
        match key {
            b'0'..=b'9' => Some(Command::Select(key - b'0')),
            b'n' => Some(Command::Next),
            b'?' => Some(Command::List),
            b'q' => Some(Command::Quit),
            _ => None,
        }
    }
}

/// What one byte of the line amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A byte for the target (a plain byte, or the literal Ctrl-T of Ctrl-T Ctrl-T).
    Byte(u8),
    /// Ctrl-T: held until the next byte says what it starts.
    Held,
    /// A complete sequence.
    Command(Command),
    /// Ctrl-T and a key that is no command: both bytes go to the target, Ctrl-T first.
    Unknown(u8),
}

impl Key {
    /// The bytes this key gives the target, in order: `(bytes, how many)`.
    pub fn bytes(self) -> ([u8; 2], usize) {
        match self {
            Key::Byte(b) => ([b, 0], 1),
            Key::Unknown(b) => ([ESCAPE, b], 2),
            Key::Held | Key::Command(_) => ([0; 2], 0),
        }
    }
}

/// The key-sequence state machine: one bit of state, so a sequence split across reads of the
/// line (or typed slowly) is still one sequence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Keys {
    escaped: bool,
}

impl Keys {
    pub const fn new() -> Self {
        Self { escaped: false }
    }

    /// Whether a Ctrl-T is held, waiting for the key that completes its sequence.
    pub fn held(&self) -> bool {
        self.escaped
    }

    /// Takes the next byte of the line.
    pub fn feed(&mut self, byte: u8) -> Key {
        if !core::mem::take(&mut self.escaped) {
            if byte == ESCAPE {
                self.escaped = true;
                return Key::Held;
            }
            return Key::Byte(byte);
        }
        if byte == ESCAPE {
            return Key::Byte(ESCAPE);
        }
        Command::of(byte).map_or(Key::Unknown(byte), Key::Command)
    }
}

/// Bytes each partition's queue holds.
pub const QUEUE: usize = 64;

/// How long the target may leave its full queue unread before what is typed for it is dropped,
/// so that a partition that never reads cannot hold back the switch keys for good.
pub const STALL_NS: u64 = 1_000_000_000;

/// Bytes taken from the line at most at once.
pub const READ_MAX: usize = 16;

/// No target.
const NOWHERE: u8 = u8::MAX;

// Slots are bits of a `u8` (`stopped`, `dropping`, [`Switch::readers`]).
const _: () = assert!(MAX_PARTITIONS <= 8);

/// One partition's bytes, until its UART takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
struct Queue {
    head: u16,
    len: u16,
    bytes: [u8; QUEUE],
}

impl Queue {
    const fn new() -> Self {
        Self {
            head: 0,
            len: 0,
            bytes: [0; QUEUE],
        }
    }

    /// Bytes waiting (none if the indices are out of range).
    fn len(&self) -> usize {
        match usize::from(self.len) {
            len if len <= QUEUE && usize::from(self.head) < QUEUE => len,
            _ => 0,
        }
    }

    fn room(&self) -> usize {
        QUEUE - self.len()
    }

    /// Appends `byte`; false when the queue is full.
    fn push(&mut self, byte: u8) -> bool {
        let len = self.len();
        if len == 0 {
            *self = Self::new();
        }
        if len == QUEUE {
            return false;
        }
        self.bytes[(usize::from(self.head) + len) % QUEUE] = byte;
        self.len = len as u16 + 1;
        true
    }

    fn pop(&mut self) -> Option<u8> {
        if self.len() == 0 {
            return None;
        }
        let byte = self.bytes[usize::from(self.head)];
        self.head = ((usize::from(self.head) + 1) % QUEUE) as u16;
        self.len -= 1;
        Some(byte)
    }
}

/// A partition as the switch shows it: its number (1-based) and name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Named<'a> {
    pub number: u8,
    pub name: &'a str,
}

impl fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "partition {} ({})", self.number, self.name)
    }
}

/// Where input goes after a refused request.
struct Stays<'a>(Option<Named<'a>>);

impl fmt::Display for Stays<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(target) => write!(f, "console input stays with {target}"),
            None => write!(f, "console input still goes nowhere"),
        }
    }
}

/// A line the hypervisor says on the console (without its `[tandem] ` prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Say<'a> {
    /// Input now goes to this partition.
    Routed(Named<'a>),
    /// `Select(asked)` named no partition; `count` partitions exist.
    NoSuchPartition {
        asked: u8,
        count: u8,
        target: Option<Named<'a>>,
    },
    /// The chosen partition has stopped.
    Refused {
        stopped: Named<'a>,
        target: Option<Named<'a>>,
    },
    /// `Next` found no running partition.
    NoneRunning,
    /// The target stopped: input goes nowhere now.
    TargetStopped(Named<'a>),
    /// Input arrived while there is no target (said once).
    Nowhere { count: u8 },
    /// The target left its full queue unread for [`STALL_NS`]: input for it is dropped until it
    /// reads again (said once each time).
    Dropping(Named<'a>),
    /// One line of the list.
    Entry {
        partition: Named<'a>,
        stopped: bool,
        target: bool,
    },
    /// The list's last line: the keys.
    Help,
    /// `Quit` outside `cargo xtask qemu`.
    Quit,
}

impl fmt::Display for Say<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Say::Routed(p) => write!(f, "console input -> {p}"),
            Say::NoSuchPartition {
                asked,
                count,
                target,
            } => write!(
                f,
                "there is no partition {asked} (1-{count}): {}",
                Stays(target)
            ),
            Say::Refused { stopped, target } => {
                write!(f, "{stopped} has stopped: {}", Stays(target))
            }
            Say::NoneRunning => write!(f, "no partition is running: console input goes nowhere"),
            Say::TargetStopped(p) => write!(
                f,
                "{p} stopped: console input goes nowhere until you choose a partition (Ctrl-T ? lists them)"
            ),
            Say::Nowhere { count } => write!(
                f,
                "console input goes nowhere: Ctrl-T 1-{} chooses a partition, Ctrl-T ? lists them",
                count.min(DIGITS)
            ),
            Say::Dropping(p) => write!(
                f,
                "{p} is not reading its console: what is typed for it is dropped until it reads"
            ),
            Say::Entry {
                partition,
                stopped,
                target,
            } => write!(
                f,
                "  {partition}{}{}",
                if stopped { " stopped" } else { "" },
                if target { " <- console input" } else { "" }
            ),
            Say::Help => write!(
                f,
                "keys: Ctrl-T 1-9 chooses a partition, Ctrl-T n the next one, Ctrl-T ? this list, Ctrl-T Ctrl-T sends Ctrl-T, Ctrl-T q ends cargo xtask qemu"
            ),
            Say::Quit => write!(
                f,
                "Ctrl-T q ends a run of cargo xtask qemu; there is no run to end here"
            ),
        }
    }
}

/// Where the console line's input goes: the key sequences, the target and each partition's
/// queue. Plain data, fixed size; one per machine, behind a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Switch {
    keys: Keys,
    /// The target's slot, or [`NOWHERE`].
    target: u8,
    /// Partitions (slots) there are: the configuration's, an FT partition's copies counted once.
    count: u8,
    /// Slots that stopped (bit n = slot n).
    stopped: u8,
    /// Slots told their input is dropped (bit n), until they read again.
    dropping: u8,
    /// Whether [`Say::Nowhere`] was said (or something that says as much).
    hinted: bool,
    /// The configuration index of each slot's partition (its primary, if fault-tolerant).
    index: [u8; MAX_PARTITIONS],
    /// Each configuration index's slot.
    slot_of: [u8; MAX_PARTITIONS],
    /// When the target's queue was first found full with bytes waiting on the line; 0 if not.
    full_since_ns: u64,
    /// Bytes typed and dropped (no target, a stopped or stalled one).
    pub dropped: u64,
    queues: [Queue; MAX_PARTITIONS],
}

impl Default for Switch {
    fn default() -> Self {
        Self::new()
    }
}

impl Switch {
    /// A switch with no partitions; [`Switch::setup`] gives it the configuration's.
    pub const fn new() -> Self {
        Self {
            keys: Keys::new(),
            target: NOWHERE,
            count: 0,
            stopped: 0,
            dropping: 0,
            hinted: false,
            index: [0; MAX_PARTITIONS],
            slot_of: [NOWHERE; MAX_PARTITIONS],
            full_since_ns: 0,
            dropped: 0,
            queues: [Queue::new(); MAX_PARTITIONS],
        }
    }

    /// The switch for `system`: one slot per partition in configuration order (a fault-tolerant
    /// partition's backup and spare share their primary's), the target the one that takes
    /// `console_input`, if any.
    pub fn setup(system: &System) -> Self {
        let mut s = Self::new();
        let parts = system.partitions.iter().enumerate().take(MAX_PARTITIONS);
        for (i, p) in parts.clone() {
            if p.ft.is_none_or(|ft| ft.role == FtRole::Primary) {
                s.index[usize::from(s.count)] = i as u8;
                s.slot_of[i] = s.count;
                if p.console_input {
                    s.target = s.count;
                }
                s.count += 1;
            }
        }
        for (i, p) in parts {
            let primary = p.guest_id(i) as usize;
            if s.slot_of[i] == NOWHERE
                && let Some(&slot) = s.slot_of.get(primary)
            {
                s.slot_of[i] = slot;
            }
        }
        s
    }

    /// The slot of the partition at configuration index `index`, if any.
    pub fn slot(&self, index: usize) -> Option<u8> {
        self.slot_of
            .get(index)
            .copied()
            .filter(|&s| s < self.count.min(MAX_PARTITIONS as u8))
    }

    /// The target's slot, if any.
    pub fn target(&self) -> Option<u8> {
        self.live(self.target).then_some(self.target)
    }

    fn live(&self, slot: u8) -> bool {
        slot < self.count.min(MAX_PARTITIONS as u8) && self.stopped & (1 << slot) == 0
    }

    fn named<'a>(&self, system: &'a System, slot: u8) -> Named<'a> {
        let name = self
            .index
            .get(usize::from(slot))
            .and_then(|&i| system.partitions.get(usize::from(i)))
            .map_or("?", |p| p.name.as_str());
        Named {
            number: slot.saturating_add(1),
            name,
        }
    }

    fn target_named<'a>(&self, system: &'a System) -> Option<Named<'a>> {
        self.target().map(|t| self.named(system, t))
    }

    /// Which slots should look at the line on every exit (bit n = slot n): the target, and any
    /// slot with bytes queued.
    pub fn readers(&self) -> u8 {
        let mut mask = 0u8;
        for slot in 0..self.count.min(MAX_PARTITIONS as u8) {
            if self.queues[usize::from(slot)].len() > 0 {
                mask |= 1 << slot;
            }
        }
        self.target().map_or(mask, |t| mask | 1 << t)
    }

    /// While there is no target, the slot that looks at the line now and then so the keys are
    /// still read: the first running one.
    pub fn watcher(&self) -> Option<u8> {
        match self.target() {
            Some(_) => None,
            None => (0..self.count.min(MAX_PARTITIONS as u8)).find(|&s| self.live(s)),
        }
    }

    /// Whether to take another byte from the line now: while the target's queue has room for
    /// what the byte may give it (two bytes while a Ctrl-T is held), so bytes wait on the line
    /// while the target reads; always without a target, or once the target has left its full
    /// queue unread for [`STALL_NS`].
    fn wants(&mut self, now_ns: u64) -> bool {
        let Some(target) = self.target() else {
            return true;
        };
        if self.queues[usize::from(target)].room() > usize::from(self.keys.held()) {
            self.full_since_ns = 0;
            return true;
        }
        if self.full_since_ns == 0 {
            self.full_since_ns = now_ns.max(1);
        }
        now_ns.saturating_sub(self.full_since_ns) >= STALL_NS
    }

    /// Takes bytes from the line, `next` giving each (`None` once none is waiting), at most
    /// [`READ_MAX`], one at a time so that each goes where the bytes before it sent input
    /// ([`Switch::receive`]); how many it took.
    pub fn pull<'a>(
        &mut self,
        now_ns: u64,
        mut next: impl FnMut() -> Option<u8>,
        system: &'a System,
        say: &mut impl FnMut(Say<'a>),
    ) -> usize {
        let mut taken = 0;
        while taken < READ_MAX && self.wants(now_ns) {
            let Some(byte) = next() else {
                break;
            };
            self.receive(byte, system, say);
            taken += 1;
        }
        taken
    }

    /// Takes one byte of the line: queues it for the target, or applies the sequence it
    /// completes; `say` gets what the hypervisor tells the user.
    pub fn receive<'a>(&mut self, byte: u8, system: &'a System, say: &mut impl FnMut(Say<'a>)) {
        match self.keys.feed(byte) {
            Key::Held => {}
            Key::Command(command) => self.command(command, system, say),
            key => {
                let (bytes, n) = key.bytes();
                for &b in bytes.iter().take(n) {
                    self.deliver(b, system, say);
                }
            }
        }
    }

    fn deliver<'a>(&mut self, byte: u8, system: &'a System, say: &mut impl FnMut(Say<'a>)) {
        let Some(target) = self.target() else {
            self.dropped = self.dropped.saturating_add(1);
            if !core::mem::replace(&mut self.hinted, true) {
                say(Say::Nowhere { count: self.count });
            }
            return;
        };
        if self.queues[usize::from(target)].push(byte) {
            return;
        }
        self.dropped = self.dropped.saturating_add(1);
        if self.dropping & (1 << target) == 0 {
            self.dropping |= 1 << target;
            say(Say::Dropping(self.named(system, target)));
        }
    }

    fn command<'a>(&mut self, command: Command, system: &'a System, say: &mut impl FnMut(Say<'a>)) {
        let count = self.count.min(MAX_PARTITIONS as u8);
        match command {
            Command::Select(n) if n == 0 || n > count => say(Say::NoSuchPartition {
                asked: n,
                count,
                target: self.target_named(system),
            }),
            Command::Select(n) if !self.live(n - 1) => say(Say::Refused {
                stopped: self.named(system, n - 1),
                target: self.target_named(system),
            }),
            Command::Select(n) => self.route(n - 1, system, say),
            Command::Next => {
                let from = self.target().map_or(count.saturating_sub(1), |t| t);
                match (1..=count)
                    .map(|step| (from + step) % count.max(1))
                    .find(|&s| self.live(s))
                {
                    Some(slot) => self.route(slot, system, say),
                    None => say(Say::NoneRunning),
                }
            }
            Command::List => {
                for slot in 0..count {
                    say(Say::Entry {
                        partition: self.named(system, slot),
                        stopped: !self.live(slot),
                        target: self.target() == Some(slot),
                    });
                }
                say(Say::Help);
            }
            Command::Quit => say(Say::Quit),
        }
    }

    fn route<'a>(&mut self, slot: u8, system: &'a System, say: &mut impl FnMut(Say<'a>)) {
        self.target = slot;
        self.full_since_ns = 0;
        self.hinted = true;
        say(Say::Routed(self.named(system, slot)));
    }

    /// Up to `buf.len()` bytes queued for `slot`; how many.
    pub fn take(&mut self, slot: u8, buf: &mut [u8]) -> usize {
        let Some(queue) = self.queues.get_mut(usize::from(slot)) else {
            return 0;
        };
        let mut n = 0;
        while n < buf.len()
            && let Some(byte) = queue.pop()
        {
            buf[n] = byte;
            n += 1;
        }
        if n > 0 {
            self.dropping &= !(1 << slot);
            if self.target == slot {
                self.full_since_ns = 0;
            }
        }
        n
    }

    /// Partition `slot` stopped (every copy of it): it cannot be chosen any more, its queue is
    /// dropped, and if it was the target, input goes nowhere and `say` hears so.
    pub fn stopped<'a>(&mut self, slot: u8, system: &'a System, say: &mut impl FnMut(Say<'a>)) {
        if !self.live(slot) {
            return;
        }
        self.stopped |= 1 << slot;
        self.queues[usize::from(slot)] = Queue::new();
        if self.target == slot {
            self.target = NOWHERE;
            self.hinted = true;
            say(Say::TargetStopped(self.named(system, slot)));
        }
    }
}

#[cfg(test)]
mod tests;
