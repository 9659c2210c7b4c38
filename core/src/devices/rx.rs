//! A UART's receive FIFO: the bytes of the machine's console line routed to the partition, until
//! the guest reads them. Shared by the UART models.
//!
//! Like [`super::line::LineBuffer`] it lives in the ledger, so its indices are never trusted:
//! anything out of range reads as an empty FIFO.

/// Bytes the FIFO holds (a 16550A's and a PL011's FIFOs hold 16 and 32).
pub const RX_FIFO: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct RxFifo {
    head: u32,
    len: u32,
    bytes: [u8; RX_FIFO],
}

impl Default for RxFifo {
    fn default() -> Self {
        Self::new()
    }
}

impl RxFifo {
    pub const fn new() -> Self {
        Self {
            head: 0,
            len: 0,
            bytes: [0; RX_FIFO],
        }
    }

    /// Bytes waiting, 0 if the stored length is corrupt.
    pub fn len(&self) -> usize {
        match self.len as usize {
            len if len <= RX_FIFO && (self.head as usize) < RX_FIFO => len,
            _ => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn room(&self) -> usize {
        RX_FIFO - self.len()
    }

    /// Appends as many of `bytes` as fit; returns how many.
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        if self.is_empty() {
            *self = Self::new();
        }
        let taken = bytes.len().min(self.room());
        for &b in &bytes[..taken] {
            let at = (self.head as usize + self.len as usize) % RX_FIFO;
            self.bytes[at] = b;
            self.len += 1;
        }
        taken
    }

    /// The oldest byte, removed.
    pub fn pop(&mut self) -> Option<u8> {
        if self.is_empty() {
            return None;
        }
        let b = self.bytes[self.head as usize];
        self.head = (self.head + 1) % RX_FIFO as u32;
        self.len -= 1;
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_come_out_in_order_and_the_fifo_refuses_overflow() {
        let mut f = RxFifo::new();
        assert_eq!(f.pop(), None);
        assert_eq!(f.push(b"abc"), 3);
        assert_eq!(f.pop(), Some(b'a'));
        assert_eq!(f.push(&[b'x'; RX_FIFO]), RX_FIFO - 2);
        assert_eq!(f.room(), 0);
        assert_eq!(f.pop(), Some(b'b'));
        assert_eq!(f.pop(), Some(b'c'));
        assert_eq!(core::iter::from_fn(|| f.pop()).count(), RX_FIFO - 2);
        assert!(f.is_empty());
    }

    #[test]
    fn corrupt_indices_read_as_empty() {
        let mut f = RxFifo::new();
        f.push(b"ab");
        f.len = 999;
        assert_eq!((f.len(), f.pop()), (0, None));
        f.head = 999;
        f.len = 1;
        assert_eq!(f.pop(), None);
        assert_eq!(f.push(b"z"), 1, "a corrupt FIFO starts over");
        assert_eq!(f.pop(), Some(b'z'));
    }
}
