//! Collecting a UART's transmitted bytes into whole lines, so two partitions' output never
//! interleaves within a line. Shared by the UART models.
//!
//! The buffer lives in the ledger, which survives microreboots and which a fault may have
//! scribbled on, so its length is never trusted: a length beyond the capacity is treated as a
//! corrupt, empty line instead of an index.
//!
//! Part of a line may be shown before it is complete ([`crate::console_out`]): `shown` counts
//! the bytes of the current line already printed, so that only the rest follows. A `shown` beyond
//! the line (a corrupt ledger) shows the whole line again rather than lose any of it.

/// A line longer than this is emitted in pieces.
pub const LINE_MAX: usize = 120;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct LineBuffer {
    len: u32,
    shown: u32,
    bytes: [u8; LINE_MAX],
}

impl Default for LineBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl LineBuffer {
    pub const fn new() -> Self {
        Self {
            len: 0,
            shown: 0,
            bytes: [0; LINE_MAX],
        }
    }

    /// Adds a transmitted byte. Returns true when a whole line is ready in [`LineBuffer::line`]:
    /// at a newline, or when the buffer is full. Carriage returns are dropped.
    pub fn push(&mut self, byte: u8) -> bool {
        match byte {
            b'\r' => false,
            b'\n' => true,
            _ => {
                let at = self.len as usize;
                let Some(slot) = self.bytes.get_mut(at) else {
                    // A full line was never cleared, or the length was corrupted: start afresh.
                    self.bytes[0] = byte;
                    self.len = 1;
                    self.shown = 0;
                    return false;
                };
                *slot = byte;
                self.len += 1;
                self.len as usize == LINE_MAX
            }
        }
    }

    /// The collected line, without its newline; empty if the stored length is out of range.
    pub fn line(&self) -> &[u8] {
        self.bytes.get(..self.len as usize).unwrap_or_default()
    }

    /// The bytes of the line not shown yet: the whole line unless part of it was
    /// ([`LineBuffer::mark_shown`]).
    pub fn unshown(&self) -> &[u8] {
        let line = self.line();
        line.get(self.shown as usize..).unwrap_or(line)
    }

    /// The line so far has been printed: only what follows is [`LineBuffer::unshown`].
    pub fn mark_shown(&mut self) {
        self.shown = self.line().len() as u32;
    }

    /// Starts a new line once the current one has been printed.
    pub fn clear(&mut self) {
        self.len = 0;
        self.shown = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout the ledger keeps: the length first, then the bytes.
    fn with_len(len: u32) -> LineBuffer {
        let mut b = LineBuffer::new();
        b.len = len;
        b
    }

    #[test]
    fn a_corrupt_length_is_an_empty_line_not_an_index() {
        for len in [LINE_MAX as u32 + 1, 0x8000_0000, u32::MAX] {
            let mut b = with_len(len);
            assert_eq!(b.line(), b"");
            assert!(!b.push(b'x'));
            assert_eq!(b.line(), b"x");
        }
    }

    #[test]
    fn only_the_unshown_rest_follows() {
        let mut b = LineBuffer::new();
        b"/ # ".iter().for_each(|&c| assert!(!b.push(c)));
        assert_eq!(b.unshown(), b"/ # ");
        b.mark_shown();
        assert_eq!(b.unshown(), b"");
        assert!(!b.push(b'l'));
        assert_eq!(b.unshown(), b"l");
        assert!(b.push(b'\n'));
        assert_eq!((b.line(), b.unshown()), (&b"/ # l"[..], &b"l"[..]));
        b.clear();
        assert!(!b.push(b'x'));
        assert_eq!(b.unshown(), b"x");
        // A corrupt count shows the whole line again.
        b.shown = 99;
        assert_eq!(b.unshown(), b"x");
    }

    #[test]
    fn a_full_line_left_uncleared_starts_a_new_one() {
        let mut b = with_len(LINE_MAX as u32);
        assert_eq!(b.line().len(), LINE_MAX);
        assert!(!b.push(b'y'));
        assert_eq!(b.line(), b"y");
        assert!(b.push(b'\n'));
    }
}
