//! Reading instruction bytes one at a time, each checked against the bytes fetched and the
//! architectural length limit.

use crate::{DecodeError, MAX_LEN};

pub struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    /// The next byte: past [`MAX_LEN`] the instruction is too long whatever was fetched.
    pub fn byte(&mut self) -> Result<u8, DecodeError> {
        if self.at >= MAX_LEN {
            return Err(DecodeError::TooLong);
        }
        let b = *self.bytes.get(self.at).ok_or(DecodeError::Truncated {
            // `at` < MAX_LEN here, so it fits.
            fetched: self.at as u8,
        })?;
        self.at += 1;
        Ok(b)
    }

    pub fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        for _ in 0..n {
            self.byte()?;
        }
        Ok(())
    }

    /// A little-endian immediate of `size` (1, 2 or 4) bytes, zero-extended.
    pub fn immediate(&mut self, size: u8) -> Result<u64, DecodeError> {
        let mut value = 0;
        for shift in 0..size {
            value |= u64::from(self.byte()?) << (8 * shift);
        }
        Ok(value)
    }

    /// Bytes read so far: at most [`MAX_LEN`].
    pub fn consumed(&self) -> u8 {
        self.at as u8
    }
}
