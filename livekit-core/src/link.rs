//! The device link: how a device and its gateway frame [`proto::LinkMessage`]s on a
//! byte stream (a serial line, or TCP).
//!
//! A frame is `A5 4C`, the link version (one byte), the payload length (u16, little
//! endian), the payload (one serialized `LinkMessage`) and a CRC-16/CCITT-FALSE of the
//! version, length and payload (u16, little endian). A serial line can lose or garble
//! bytes: the decoder then skips to the next frame that checks out and counts what it
//! dropped, so one bad byte costs one message, never the link.

use alloc::vec::Vec;
use core::fmt;

use prost::Message;

/// The link's messages, generated from `proto/link.proto`.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/livekit.link.rs"));
}

pub use proto::link_message::Message as Msg;
pub use proto::LinkMessage;

/// The link version this crate speaks (the `version` of frames and of `Hello`).
pub const VERSION: u8 = 1;
/// First two bytes of every frame.
pub const MAGIC: [u8; 2] = [0xA5, 0x4C];
/// Magic, version and length.
pub const HEADER_LEN: usize = 5;
/// The CRC after the payload.
pub const TRAILER_LEN: usize = 2;
/// The largest payload: a full data-stream chunk (15000 bytes) with its packet
/// around it fits with room to spare.
pub const MAX_PAYLOAD: usize = 20 * 1024;

/// What the decoder had to drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    /// Bytes that were not a frame (bad magic, length past [`MAX_PAYLOAD`], CRC
    /// mismatch): `skipped` bytes were dropped to find the next frame.
    Corrupt { skipped: usize },
    /// A whole frame of another link version.
    Version(u8),
    /// A frame that checked out but held no `LinkMessage`.
    Malformed,
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Corrupt { skipped } => write!(f, "{skipped} corrupt bytes skipped"),
            Self::Version(v) => write!(f, "a frame of link version {v} (we speak {VERSION})"),
            Self::Malformed => f.write_str("a frame whose payload is not a link message"),
        }
    }
}

/// Frames `message`. `None` when its payload would exceed [`MAX_PAYLOAD`].
pub fn encode(message: &LinkMessage) -> Option<Vec<u8>> {
    let len = message.encoded_len();
    if len > MAX_PAYLOAD {
        return None;
    }
    let mut out = Vec::with_capacity(HEADER_LEN + len + TRAILER_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&(len as u16).to_le_bytes());
    message.encode_raw(&mut out);
    let crc = crc16(&out[2..]);
    out.extend_from_slice(&crc.to_le_bytes());
    Some(out)
}

/// Frames one message around `m` (a shorthand for the common case).
pub fn frame(m: Msg) -> Option<Vec<u8>> {
    encode(&LinkMessage { message: Some(m) })
}

/// Reassembles frames from the bytes of a stream, in whatever pieces they come.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Bytes dropped so far while looking for frames.
    pub dropped_bytes: u64,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes in bytes read from the link.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held that are not a whole frame yet.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Forgets a partial frame (the link was cut: what follows is a new stream).
    pub fn reset(&mut self) {
        self.buf.clear();
    }

    /// The next message, an error for what had to be dropped, or `None` until more
    /// bytes come.
    pub fn next_message(&mut self) -> Option<Result<LinkMessage, LinkError>> {
        let start = self.find_magic();
        if start > 0 {
            self.skip(start);
            return Some(Err(LinkError::Corrupt { skipped: start }));
        }
        if self.buf.len() < HEADER_LEN {
            return None;
        }
        let version = self.buf[2];
        let len = usize::from(u16::from_le_bytes([self.buf[3], self.buf[4]]));
        if len > MAX_PAYLOAD {
            // Not a header after all: look for the next magic past this one.
            self.skip(1);
            return Some(Err(LinkError::Corrupt { skipped: 1 }));
        }
        let total = HEADER_LEN + len + TRAILER_LEN;
        if self.buf.len() < total {
            return None;
        }
        let want = u16::from_le_bytes([self.buf[total - 2], self.buf[total - 1]]);
        if crc16(&self.buf[2..total - 2]) != want {
            self.skip(1);
            return Some(Err(LinkError::Corrupt { skipped: 1 }));
        }
        let decoded = if version != VERSION {
            Err(LinkError::Version(version))
        } else {
            match LinkMessage::decode(&self.buf[HEADER_LEN..total - 2]) {
                Ok(m) if m.message.is_some() => Ok(m),
                _ => Err(LinkError::Malformed),
            }
        };
        self.buf.drain(..total);
        Some(decoded)
    }

    /// Where the next possible frame starts (all of the buffer but a trailing
    /// first magic byte when there is none).
    fn find_magic(&self) -> usize {
        let b = &self.buf;
        let mut i = 0;
        while i < b.len() {
            if b[i] == MAGIC[0] && (i + 1 == b.len() || b[i + 1] == MAGIC[1]) {
                return i;
            }
            i += 1;
        }
        b.len()
    }

    fn skip(&mut self, n: usize) {
        self.buf.drain(..n);
        self.dropped_bytes += n as u64;
    }
}

/// CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF): small enough to run bitwise on a
/// microcontroller at link speeds.
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(any(test, feature = "selftest"))]
pub(crate) mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn connect() -> LinkMessage {
        LinkMessage {
            message: Some(Msg::Connect(proto::Connect {
                url: "ws://127.0.0.1:7880".to_string(),
                token: "t0k3n".to_string(),
            })),
        }
    }

    fn all(d: &mut Decoder) -> Vec<Result<LinkMessage, LinkError>> {
        core::iter::from_fn(|| d.next_message()).collect()
    }

    #[cfg_attr(test, test)]
    fn crc_is_ccitt_false() {
        assert_eq!(crc16(b"123456789"), 0x29B1);
    }

    #[cfg_attr(test, test)]
    fn a_frame_comes_back_whole_from_any_split() {
        let bytes = encode(&connect()).unwrap();
        for cut in 0..bytes.len() {
            let mut d = Decoder::new();
            d.push(&bytes[..cut]);
            assert!(d.next_message().is_none(), "cut at {cut}");
            d.push(&bytes[cut..]);
            assert_eq!(d.next_message(), Some(Ok(connect())));
            assert!(d.next_message().is_none());
            assert_eq!(d.pending(), 0);
        }
    }

    #[cfg_attr(test, test)]
    fn garbage_and_a_corrupt_frame_cost_only_themselves() {
        let good = encode(&connect()).unwrap();
        let mut bad = good.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x40;
        let mut stream = vec![0x00, 0xA5, 0x13, 0xA5];
        stream.extend_from_slice(&bad);
        stream.extend_from_slice(&good);
        let mut d = Decoder::new();
        d.push(&stream);
        let got = all(&mut d);
        assert_eq!(got.iter().filter(|r| r.is_ok()).count(), 1);
        assert_eq!(got.last(), Some(&Ok(connect())));
        assert!(got[..got.len() - 1]
            .iter()
            .all(|r| matches!(r, Err(LinkError::Corrupt { .. }))));
        assert_eq!(d.dropped_bytes as usize, 4 + bad.len());
    }

    #[cfg_attr(test, test)]
    fn other_versions_and_oversized_lengths_are_refused() {
        let mut other = encode(&connect()).unwrap();
        other[2] = 9;
        let n = other.len();
        let crc = crc16(&other[2..n - 2]).to_le_bytes();
        other[n - 2..].copy_from_slice(&crc);
        let mut d = Decoder::new();
        d.push(&other);
        assert_eq!(d.next_message(), Some(Err(LinkError::Version(9))));

        let mut huge = vec![0xA5, 0x4C, VERSION];
        huge.extend_from_slice(&u16::MAX.to_le_bytes());
        d.push(&huge);
        d.push(&encode(&connect()).unwrap());
        let got = all(&mut d);
        assert_eq!(got.last(), Some(&Ok(connect())));

        let payload = vec![0u8; MAX_PAYLOAD];
        let big = LinkMessage {
            message: Some(Msg::Packet(proto::Packet {
                kind: 0,
                data: payload,
            })),
        };
        assert!(encode(&big).is_none());
    }

    #[cfg_attr(test, test)]
    fn an_empty_message_is_malformed() {
        let mut d = Decoder::new();
        let mut empty = vec![0xA5, 0x4C, VERSION, 0, 0];
        let crc = crc16(&empty[2..]).to_le_bytes();
        empty.extend_from_slice(&crc);
        d.push(&empty);
        assert_eq!(d.next_message(), Some(Err(LinkError::Malformed)));
    }

    /// Every test above, for the bare-metal runner (`selftest` feature).
    pub(crate) const TESTS: &[(&str, fn())] = &[
        ("crc_is_ccitt_false", crc_is_ccitt_false),
        (
            "a_frame_comes_back_whole_from_any_split",
            a_frame_comes_back_whole_from_any_split,
        ),
        (
            "garbage_and_a_corrupt_frame_cost_only_themselves",
            garbage_and_a_corrupt_frame_cost_only_themselves,
        ),
        (
            "other_versions_and_oversized_lengths_are_refused",
            other_versions_and_oversized_lengths_are_refused,
        ),
        (
            "an_empty_message_is_malformed",
            an_empty_message_is_malformed,
        ),
    ];
}
