//! The model guest: a small deterministic state machine standing in for a VM. Its whole state is
//! one hash, so any difference in what it consumed shows in every later execution point.

use super::rng::mix;
use crate::record::Event;
use std::vec::Vec;
use tandem_core::point::ExecPoint;

/// What the guest does at its next deterministic exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Reads the time (value from the host, logged).
    TimeRead,
    /// Reads a random number (logged).
    RandomRead,
    /// Sends one output (a reply to an input it received).
    Output,
    /// Has nothing to do: halts until an interrupt or input arrives.
    Halt,
    /// Any other deterministic exit (CPUID, port I/O to an emulated device).
    Plain,
}

/// Work an interrupt (a timer tick) gives the guest, in exits.
const TICK_WORK: u32 = 3;
/// Work an input (a request) gives the guest, in exits; it also owes a reply.
const INPUT_WORK: u32 = 6;
/// Most branches the guest executes between two deterministic exits.
const MAX_BRANCHES_PER_EXIT: u64 = 64;

/// A model guest.
#[derive(Clone, Debug)]
pub struct Guest {
    state: u64,
    det_exits: u64,
    pc: u64,
    /// Branches executed (the precise counter); the next exit comes at `next_exit_branches`.
    branches: u64,
    next_exit_branches: u64,
    /// Whether points carry the branch count (a platform with a precise counter).
    precise: bool,
    halted: bool,
    work: u32,
    replies_owed: u32,
    /// Outputs produced so far: index is the guest's output number, value is the content.
    pub outputs: Vec<u64>,
    /// The state at each exit (index `n` is exit `n + 1`), when history is kept.
    pub exit_states: Vec<u64>,
    keep_history: bool,
}

impl Guest {
    /// A freshly booted guest with some start-up work; `precise` gives its points a branch count.
    pub fn new(keep_history: bool, precise: bool) -> Self {
        let state = 0x7A4D_E4B0_07ED;
        Self {
            state,
            det_exits: 0,
            pc: 0x1000,
            branches: 0,
            next_exit_branches: branches_to_exit(state),
            precise,
            halted: false,
            work: 8,
            replies_owed: 0,
            outputs: Vec::new(),
            exit_states: Vec::new(),
            keep_history,
        }
    }

    /// The current point: an exit boundary, or with a precise counter a stop between exits.
    pub fn point(&self) -> ExecPoint {
        ExecPoint {
            det_exits: self.det_exits,
            pc: self.pc,
            reg_hash: self.state,
            precise: self.precise.then_some(self.branches),
        }
    }

    /// With a precise counter: whether the guest can stop at branch `branches` before its next
    /// exit (it is past it already, or the exit comes first, otherwise).
    pub fn can_stop_at(&self, branches: u64) -> bool {
        self.precise
            && !self.halted
            && self.branches < branches
            && branches < self.next_exit_branches
    }

    /// Where the guest could be stopped between exits, `fraction` of the way to its next exit
    /// (`None` without a precise counter, when halted, or when the exit is the next branch).
    pub fn stop_point(&self, fraction: f64) -> Option<u64> {
        let span = self.next_exit_branches - self.branches;
        let at = self.branches + 1 + ((span - 1) as f64 * fraction) as u64;
        self.can_stop_at(at).then_some(at)
    }

    /// Run up to branch `branches` and stop there, between exits (see [`Guest::can_stop_at`]).
    pub fn stop_at(&mut self, branches: u64) {
        if self.can_stop_at(branches) {
            self.branches = branches;
            self.pc = (mix(self.state ^ branches) & 0xffff_fff0) | 0x2000;
        }
    }

    /// Halted guests do not run until an event is delivered.
    pub fn halted(&self) -> bool {
        self.halted
    }

    /// Whether the guest still owes replies to inputs it received.
    pub fn owes_replies(&self) -> bool {
        self.replies_owed > 0
    }

    /// Deterministic exits taken.
    pub fn det_exits(&self) -> u64 {
        self.det_exits
    }

    /// The exit the guest will take next if run, and its point.
    pub fn peek_exit(&self) -> (Exit, ExecPoint) {
        let kind = if self.work == 0 {
            Exit::Halt
        } else if self.replies_owed > 0 && (self.state >> 7).is_multiple_of(3) {
            Exit::Output
        } else {
            match (self.state >> 11) % 10 {
                0 | 1 => Exit::TimeRead,
                2 => Exit::RandomRead,
                _ => Exit::Plain,
            }
        };
        let point = ExecPoint {
            det_exits: self.det_exits + 1,
            pc: (mix(self.state ^ self.det_exits) & 0xffff_fff0) | 0x1000,
            reg_hash: self.state,
            precise: self.precise.then_some(self.next_exit_branches),
        };
        (kind, point)
    }

    /// The content of the output the guest is about to send (valid when the next exit is Output).
    pub fn output_digest(&self) -> u64 {
        mix(self.state ^ 0x5555)
    }

    /// Take the next exit; `value` is the result of a time or random read (ignored otherwise).
    /// Returns the output number and content when the exit was an output.
    pub fn commit_exit(&mut self, value: u64) -> Option<(u64, u64)> {
        let (kind, point) = self.peek_exit();
        if self.keep_history {
            self.exit_states.push(self.state);
        }
        self.det_exits = point.det_exits;
        self.pc = point.pc;
        self.branches = self.next_exit_branches;
        let mut output = None;
        match kind {
            Exit::TimeRead | Exit::RandomRead => self.state = mix(self.state ^ value),
            Exit::Output => {
                let content = self.output_digest();
                output = Some((self.outputs.len() as u64, content));
                self.outputs.push(content);
                self.replies_owed -= 1;
                self.state = mix(self.state.wrapping_add(1));
            }
            Exit::Halt => {
                self.halted = true;
                self.state = mix(self.state ^ 0x4854);
            }
            Exit::Plain => self.state = mix(self.state),
        }
        if kind != Exit::Halt {
            self.work -= 1;
        }
        self.next_exit_branches = self.branches + branches_to_exit(self.state);
        output
    }

    /// Inject an interrupt or input at the current boundary.
    pub fn deliver(&mut self, event: &Event) {
        match event {
            Event::Interrupt { vector } => {
                self.state = mix(self.state ^ u64::from(*vector));
                self.work += TICK_WORK;
            }
            Event::Input { device, data } => {
                let h = data
                    .iter()
                    .fold(u64::from(*device), |h, b| mix(h ^ u64::from(*b)));
                self.state = mix(self.state ^ h);
                self.work += INPUT_WORK;
                self.replies_owed += 1;
            }
            _ => return,
        }
        self.halted = false;
        self.next_exit_branches = self.branches + branches_to_exit(self.state);
    }

    /// A replay bug: the state silently changes (what the divergence checks must catch).
    pub fn perturb(&mut self) {
        self.state ^= 1 << 17;
    }
}

/// Branches from a point with guest state `state` to the next exit (at least one).
fn branches_to_exit(state: u64) -> u64 {
    1 + mix(state ^ 0xB7A2) % MAX_BRANCHES_PER_EXIT
}
