//! Ethernet MAC addresses: the boards of a pair across boards and its witness, as the
//! configuration names them and as the wire carries them.

use serde::{Deserialize, Serialize};

/// An Ethernet MAC address.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

/// Length of a MAC address as text (`xx:xx:xx:xx:xx:xx`).
pub const MAC_TEXT: usize = 17;

const HEX: &[u8; 16] = b"0123456789abcdef";

impl Mac {
    /// Every station on the segment.
    pub const BROADCAST: Mac = Mac([0xff; 6]);

    /// Parse `b0:c4:20:00:00:01` (either case); anything else is `None`.
    pub fn parse(text: &str) -> Option<Mac> {
        let text = text.as_bytes();
        if text.len() != MAC_TEXT {
            return None;
        }
        let mut mac = [0u8; 6];
        for (i, byte) in mac.iter_mut().enumerate() {
            let at = i * 3;
            if i > 0 && text[at - 1] != b':' {
                return None;
            }
            *byte = (hex_digit(text[at])? << 4) | hex_digit(text[at + 1])?;
        }
        Some(Mac(mac))
    }

    /// The address as `xx:xx:xx:xx:xx:xx` in lower case, written without `core::fmt` (which the
    /// hypervisor's log path avoids).
    pub fn text(self) -> heapless::String<MAC_TEXT> {
        let mut out = heapless::String::new();
        for (i, byte) in self.0.iter().enumerate() {
            if i > 0 {
                push(&mut out, b':');
            }
            push(&mut out, HEX[usize::from(byte >> 4)]);
            push(&mut out, HEX[usize::from(byte & 0xf)]);
        }
        out
    }
}

/// Append one ASCII byte. The capacity is exactly one MAC's text, so `text` never overflows it.
fn push(out: &mut heapless::String<MAC_TEXT>, ascii: u8) {
    let _ = out.push(char::from(ascii));
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}
