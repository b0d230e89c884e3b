//! What the fuzz targets and the seed generator share: how one input is cut into
//! several messages, and a small deterministic random source for split points.

/// At most this many messages are taken from one input (the rest is ignored), so
/// one input costs a bounded amount of work.
pub const MAX_MESSAGES: usize = 64;

/// Reads a protobuf varint off the front of `b`.
pub fn read_varint(b: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..10 {
        let (&byte, rest) = b.split_first()?;
        *b = rest;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

pub fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The top-level fields of a protobuf message, each as bytes that decode on their
/// own. For a message that is one `oneof` (such as `SignalResponse`), encoded
/// messages written one after the other come apart again in order. `None` when
/// the bytes are not a sequence of well-formed fields.
pub fn top_level_fields(mut b: &[u8]) -> Option<Vec<&[u8]>> {
    let mut fields = Vec::new();
    while !b.is_empty() && fields.len() < MAX_MESSAGES {
        let start = b;
        let key = read_varint(&mut b)?;
        if key >> 3 == 0 {
            return None;
        }
        let skip = match key & 7 {
            0 => {
                read_varint(&mut b)?;
                0
            }
            1 => 8,
            2 => usize::try_from(read_varint(&mut b)?).ok()?,
            5 => 4,
            _ => return None, // groups, or not a wire type
        };
        if skip > b.len() {
            return None;
        }
        b = &b[skip..];
        fields.push(&start[..start.len() - b.len()]);
    }
    Some(fields)
}

/// Data channel messages as the `data_packet` target reads a sequence of them:
/// each is a varint `len << 1 | lossy` followed by its `len` bytes.
pub fn frame_packets(packets: &[(bool, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (lossy, bytes) in packets {
        write_varint(&mut out, ((bytes.len() as u64) << 1) | u64::from(*lossy));
        out.extend_from_slice(bytes);
    }
    out
}

/// The messages of an input framed by [`frame_packets`]; `None` unless the whole
/// input is such frames.
pub fn unframe_packets(mut b: &[u8]) -> Option<Vec<(bool, &[u8])>> {
    let mut packets = Vec::new();
    while !b.is_empty() {
        if packets.len() == MAX_MESSAGES {
            break;
        }
        let head = read_varint(&mut b)?;
        let len = usize::try_from(head >> 1).ok()?;
        if len > b.len() {
            return None;
        }
        packets.push((head & 1 == 1, &b[..len]));
        b = &b[len..];
    }
    (!packets.is_empty()).then_some(packets)
}

/// A linear congruential generator: split points and time steps that depend on
/// the input only, so a crash reproduces.
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Self {
        Lcg(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    /// A number in `1..=max`.
    pub fn between_1_and(&mut self, max: u64) -> u64 {
        1 + self.next_u64() % max.max(1)
    }
}

/// `bytes` cut into pieces of random lengths (1 to 64 bytes, sometimes all that
/// is left), as a stream arrives from a serial line or a socket.
pub fn split<'a>(bytes: &'a [u8], rng: &mut Lcg) -> Vec<&'a [u8]> {
    let mut pieces = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = if rng.next_u64().is_multiple_of(8) {
            rest.len()
        } else {
            (rng.between_1_and(64) as usize).min(rest.len())
        };
        pieces.push(&rest[..n]);
        rest = &rest[n..];
    }
    pieces
}
