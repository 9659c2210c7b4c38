//! Raw Ethernet II framing for the links between boards: no IP, so the boards need no IP stack
//! and no ARP, and a dedicated link carries only Tandem's traffic.
//!
//! ```text
//! dst mac (6) | src mac (6) | ethertype 0x88B5 BE (2) | channel (1) | len u16 LE (2) | payload | zero padding
//! ```
//! `channel` says which part of Tandem the payload is for ([`Channel`]). Ethernet pads frames to
//! [`MIN_FRAME`] bytes, so `len` says where the payload ends. Every byte of a received frame may be
//! hostile: [`decode`] checks each field and never panics.

/// IEEE 802 local experimental EtherType 1: ours on a link that carries only Tandem traffic.
pub const ETHERTYPE: u16 = 0x88B5;
/// Bytes before the payload: two MACs, the EtherType, the channel and the length.
pub const HEADER: usize = 17;
/// Shortest frame on the wire without its FCS; shorter frames are padded with zeros.
pub const MIN_FRAME: usize = 60;
/// Largest payload: a 1500-byte Ethernet payload less the channel and the length.
pub const MAX_PAYLOAD: usize = 1500 - 3;
/// Largest frame without its FCS.
pub const MAX_FRAME: usize = HEADER + MAX_PAYLOAD;

pub use tandem_core::config::{MAC_TEXT, Mac};

/// What a frame's payload is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Channel {
    /// The FT log link: data and acks of [`super::datagram`].
    Log = 0,
    /// The witness that arbitrates who goes live ([`crate::witness`]).
    Witness = 1,
    /// A re-protection's memory and vCPU state, to the spare board
    /// ([`crate::reprotect::transfer`]), over a link of its own.
    State = 2,
}

impl Channel {
    fn from_u8(code: u8) -> Option<Channel> {
        match code {
            0 => Some(Channel::Log),
            1 => Some(Channel::Witness),
            2 => Some(Channel::State),
            _ => None,
        }
    }
}

/// A decoded frame, borrowing its payload from the received bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub dst: Mac,
    pub src: Mac,
    pub channel: Channel,
    pub payload: &'a [u8],
}

impl Frame<'_> {
    /// Whether a station with address `me` should take this frame (sent to it or to everyone).
    /// Hubs and emulator sockets deliver every frame to every station, so this filter is needed.
    pub fn is_for(&self, me: Mac) -> bool {
        self.dst == me || self.dst == Mac::BROADCAST
    }
}

/// Write a frame carrying `payload` into `out`, padded with zeros to [`MIN_FRAME`]; returns its
/// length, or `None` if the payload exceeds [`MAX_PAYLOAD`] or the frame does not fit in `out`.
pub fn encode(
    dst: Mac,
    src: Mac,
    channel: Channel,
    payload: &[u8],
    out: &mut [u8],
) -> Option<usize> {
    if payload.len() > MAX_PAYLOAD {
        return None;
    }
    let end = HEADER + payload.len();
    let len = end.max(MIN_FRAME);
    let out = out.get_mut(..len)?;
    out[0..6].copy_from_slice(&dst.0);
    out[6..12].copy_from_slice(&src.0);
    out[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
    out[14] = channel as u8;
    // MAX_PAYLOAD < 2^16, checked above.
    out[15..17].copy_from_slice(&(payload.len() as u16).to_le_bytes());
    out[HEADER..end].copy_from_slice(payload);
    out[end..].fill(0);
    Some(len)
}

/// Read a frame; `None` if it is not ours (another EtherType), names an unknown channel, or its
/// length runs past the bytes received. Trailing bytes (padding, an FCS) are ignored.
pub fn decode(frame: &[u8]) -> Option<Frame<'_>> {
    let header = frame.get(..HEADER)?;
    if header[12..14] != ETHERTYPE.to_be_bytes() {
        return None;
    }
    let channel = Channel::from_u8(header[14])?;
    let len = usize::from(u16::from_le_bytes([header[15], header[16]]));
    if len > MAX_PAYLOAD {
        return None;
    }
    let payload = frame.get(HEADER..HEADER + len)?;
    Some(Frame {
        dst: mac_at(header, 0),
        src: mac_at(header, 6),
        channel,
        payload,
    })
}

/// The MAC at `at` in a header already known to be [`HEADER`] bytes long.
fn mac_at(header: &[u8], at: usize) -> Mac {
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&header[at..at + 6]);
    Mac(mac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: Mac = Mac([0xb0, 0xc4, 0x20, 0, 0, 1]);
    const B: Mac = Mac([0xb0, 0xc4, 0x20, 0, 0, 2]);

    #[test]
    fn short_payload_is_padded_to_the_minimum_and_round_trips() {
        let mut out = [0xaau8; MAX_FRAME];
        let n = encode(A, B, Channel::Witness, &[1, 2, 3], &mut out).unwrap();
        assert_eq!(n, MIN_FRAME);
        assert_eq!(&out[12..14], &[0x88, 0xb5]);
        assert!(out[HEADER + 3..n].iter().all(|&b| b == 0), "zero padding");
        let f = decode(&out[..n]).unwrap();
        assert_eq!(
            f,
            Frame {
                dst: A,
                src: B,
                channel: Channel::Witness,
                payload: &[1, 2, 3]
            }
        );
        assert!(f.is_for(A));
        assert!(!f.is_for(B));
    }

    #[test]
    fn largest_payload_fills_a_full_size_frame() {
        let mut out = [0u8; MAX_FRAME + 10];
        let payload = [7u8; MAX_PAYLOAD];
        assert_eq!(
            encode(A, B, Channel::Log, &payload, &mut out),
            Some(MAX_FRAME)
        );
        assert_eq!(MAX_FRAME, 1514);
        assert_eq!(decode(&out[..MAX_FRAME]).unwrap().payload, &payload[..]);
        assert_eq!(
            encode(A, B, Channel::Log, &[0; MAX_PAYLOAD + 1], &mut out),
            None
        );
    }

    #[test]
    fn encode_refuses_a_buffer_too_small() {
        assert_eq!(
            encode(A, B, Channel::Log, &[], &mut [0u8; MIN_FRAME - 1]),
            None
        );
        assert_eq!(encode(A, B, Channel::Log, &[1; 50], &mut [0u8; 66]), None);
        assert_eq!(
            encode(A, B, Channel::Log, &[1; 50], &mut [0u8; 67]),
            Some(67)
        );
    }

    #[test]
    fn decode_rejects_foreign_ethertype_unknown_channel_and_overlong_len() {
        let mut out = [0u8; MAX_FRAME];
        let n = encode(A, B, Channel::Log, &[9; 10], &mut out).unwrap();
        let mut bad = out;
        bad[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        assert_eq!(decode(&bad[..n]), None);
        let mut bad = out;
        bad[14] = 3;
        assert_eq!(decode(&bad[..n]), None);
        let mut bad = out;
        bad[15..17].copy_from_slice(&((n - HEADER + 1) as u16).to_le_bytes());
        assert_eq!(decode(&bad[..n]), None);
        let mut bad = out;
        bad[15..17].copy_from_slice(&u16::MAX.to_le_bytes());
        assert_eq!(decode(&bad), None);
    }

    #[test]
    fn every_truncation_of_a_frame_decodes_or_is_refused_without_panicking() {
        let mut out = [0u8; MAX_FRAME];
        let n = encode(A, B, Channel::Witness, &[5; 30], &mut out).unwrap();
        for cut in 0..=n {
            let ok = decode(&out[..cut]).is_some();
            assert_eq!(ok, cut >= HEADER + 30, "cut at {cut}");
        }
    }

    #[test]
    fn mac_text_round_trips_and_bad_text_is_refused() {
        let mac = Mac::parse("b0:C4:20:00:00:0f").unwrap();
        assert_eq!(mac, Mac([0xb0, 0xc4, 0x20, 0, 0, 0x0f]));
        assert_eq!(mac.text().as_str(), "b0:c4:20:00:00:0f");
        assert_eq!(Mac::BROADCAST.text().as_str(), "ff:ff:ff:ff:ff:ff");
        for bad in [
            "",
            "b0:c4:20:00:00",
            "b0:c4:20:00:00:0f:",
            "b0-c4-20-00-00-0f",
            "b0:c4:20:00:00:0g",
            "b0:c4:20:00:000f ",
            "+0:c4:20:00:00:0f",
            "é0:c4:20:00:00:0",
        ] {
            assert_eq!(Mac::parse(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1600)) {
            if let Some(f) = decode(&bytes) {
                prop_assert!(f.payload.len() <= bytes.len() - HEADER);
            }
        }

        #[test]
        fn random_bytes_behind_our_header_never_panic(
            channel in 0u8..5,
            len in any::<u16>(),
            tail in proptest::collection::vec(any::<u8>(), 0..1600),
        ) {
            let mut frame = vec![0u8; HEADER];
            frame[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
            frame[14] = channel;
            frame[15..17].copy_from_slice(&len.to_le_bytes());
            frame.extend_from_slice(&tail);
            let fits = usize::from(len) <= tail.len() && usize::from(len) <= MAX_PAYLOAD;
            prop_assert_eq!(decode(&frame).is_some(), channel < 3 && fits);
        }

        #[test]
        fn encode_then_decode_round_trips(
            dst in any::<[u8; 6]>(),
            src in any::<[u8; 6]>(),
            witness in any::<bool>(),
            payload in proptest::collection::vec(any::<u8>(), 0..=MAX_PAYLOAD),
        ) {
            let channel = if witness { Channel::Witness } else { Channel::Log };
            let mut out = [0u8; MAX_FRAME];
            let n = encode(Mac(dst), Mac(src), channel, &payload, &mut out).unwrap();
            prop_assert_eq!(n, (HEADER + payload.len()).max(MIN_FRAME));
            let f = decode(&out[..n]).unwrap();
            prop_assert_eq!(f, Frame { dst: Mac(dst), src: Mac(src), channel, payload: &payload });
        }

        #[test]
        fn any_text_parses_without_panicking(text in ".{0,20}") {
            if let Some(mac) = Mac::parse(&text) {
                let again = mac.text();
                prop_assert_eq!(again.as_str(), text.to_ascii_lowercase());
            }
        }
    }
}
