//! Collecting a UART's transmitted bytes into whole lines, so two partitions' output never
//! interleaves within a line. Shared by the UART models.

/// A line longer than this is emitted in pieces.
pub const LINE_MAX: usize = 120;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct LineBuffer {
    len: u32,
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
                self.bytes[self.len as usize] = byte;
                self.len += 1;
                self.len as usize == LINE_MAX
            }
        }
    }

    /// The collected line, without its newline.
    pub fn line(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// Starts a new line once the current one has been printed.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}
