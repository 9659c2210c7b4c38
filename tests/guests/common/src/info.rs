//! What `PARTITION_INFO` reports, decoded from its 104 little-endian bytes, and the partition's
//! `key=value` arguments.

use core::str::FromStr;

pub const SIZE: usize = 104;

pub struct PartitionInfo {
    pub id: u32,
    pub vcpus: u32,
    /// How many times the partition was restarted at its own request.
    pub resets: u32,
    pub memory: u64,
    buf: [u8; SIZE],
}

fn text(bytes: &[u8]) -> &str {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    core::str::from_utf8(&bytes[..end]).unwrap_or("?")
}

impl PartitionInfo {
    pub fn decode(buf: [u8; SIZE]) -> Self {
        let word = |at: usize| u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
        Self {
            id: word(4),
            vcpus: word(8),
            resets: word(12),
            memory: u64::from(word(16)) | u64::from(word(20)) << 32,
            buf,
        }
    }

    pub fn name(&self) -> &str {
        text(&self.buf[24..40])
    }

    pub fn args(&self) -> &str {
        text(&self.buf[40..SIZE])
    }

    /// The argument `key`, parsed; `None` when absent or malformed.
    pub fn number<T: FromStr>(&self, key: &str) -> Option<T> {
        arg(self.args(), key).and_then(|v| v.parse().ok())
    }
}

/// The value of `key=value` in the partition's argument string.
pub fn arg<'a>(args: &'a str, key: &str) -> Option<&'a str> {
    args.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}
