//! Console lines kept by output number.

use heapless::Vec;
use tandem_core::devices::line::LINE_MAX;
use tandem_ft::primary::MAX_HELD_OUTPUTS;

/// Console lines by output number: the primary's held until released, the backup's kept until
/// go-live may need to print them.
pub(super) struct Lines {
    first: u64,
    lines: heapless::Deque<Vec<u8, LINE_MAX>, MAX_HELD_OUTPUTS>,
}

impl Lines {
    pub(super) const fn new() -> Self {
        Self {
            first: 0,
            lines: heapless::Deque::new(),
        }
    }

    pub(super) fn free(&self) -> usize {
        self.lines.capacity() - self.lines.len()
    }

    /// Keeps line `seq`; the oldest is dropped when full (the backup only needs the newest).
    pub(super) fn push(&mut self, seq: u64, line: &[u8]) {
        if self.lines.is_full() {
            self.lines.pop_front();
            self.first += 1;
        }
        if self.lines.is_empty() {
            self.first = seq;
        }
        let mut copy = Vec::new();
        // A line never exceeds LINE_MAX: the UART models and the hypercall split at it.
        let _ = copy.extend_from_slice(&line[..line.len().min(LINE_MAX)]);
        let _ = self.lines.push_back(copy);
    }

    pub(super) fn get(&self, seq: u64) -> Option<&[u8]> {
        let index = usize::try_from(seq.checked_sub(self.first)?).ok()?;
        self.lines.iter().nth(index).map(|l| l.as_slice())
    }

    /// Forgets every line before `seq`.
    pub(super) fn release_to(&mut self, seq: u64) {
        while self.first < seq && self.lines.pop_front().is_some() {
            self.first += 1;
        }
    }
}
