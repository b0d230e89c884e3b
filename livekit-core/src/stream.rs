//! Data streams: a header, numbered chunks and a trailer, sent as reliable packets.
//!
//! [`Sender`] cuts what is written into chunks of at most [`CHUNK_SIZE`] bytes (text
//! only on character boundaries) and numbers them; [`Receiver`] puts streams back
//! together and refuses anything that would corrupt them silently: a chunk out of
//! order, missing or repeated, more or fewer bytes than announced, text that is not
//! UTF-8, a stream whose sender left. Both hold a bounded number of streams at once
//! (4 each by default, as on the ESP32), with a clear error past the bound.

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use crate::packet::{self, data_packet, data_stream};

/// The most content bytes one chunk carries.
pub const CHUNK_SIZE: usize = 15_000;
/// Streams open at once, each way, unless configured otherwise.
pub const DEFAULT_MAX_STREAMS: usize = 4;
pub const TEXT_MIME_TYPE: &str = "text/plain";
pub const BYTES_MIME_TYPE: &str = "application/octet-stream";

/// Why a stream could not be opened, written, or read to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamError {
    /// More streams than the configured bound.
    TooManyStreams { limit: usize },
    /// A stream with this id is already open.
    DuplicateId,
    /// No open stream has this id (never opened, or already ended).
    UnknownStream,
    /// Chunks must come numbered 0, 1, 2, ...: one was missing, repeated or early.
    OutOfOrder { expected: u64, got: u64 },
    /// More bytes than the header announced.
    TooLong { announced: u64 },
    /// The trailer came before the announced number of bytes.
    Incomplete { announced: u64, received: u64 },
    /// A text chunk that is not UTF-8 on its own.
    InvalidUtf8 { chunk: u64 },
    /// The sender left the room before the trailer.
    SenderLeft { identity: String },
    /// The sender ended the stream with a reason (its trailer).
    Aborted { reason: String },
    /// A header that carries neither a text nor a byte header.
    InvalidHeader,
    /// We left the room before the stream ended.
    Disconnected,
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::TooManyStreams { limit } => {
                write!(f, "too many streams open at once (limit {limit})")
            }
            StreamError::DuplicateId => f.write_str("a stream with this id is already open"),
            StreamError::UnknownStream => f.write_str("no open stream has this id"),
            StreamError::OutOfOrder { expected, got } => {
                write!(f, "chunk {got} arrived where chunk {expected} was expected")
            }
            StreamError::TooLong { announced } => {
                write!(f, "more data than the {announced} bytes announced")
            }
            StreamError::Incomplete {
                announced,
                received,
            } => {
                write!(f, "stream ended after {received} of {announced} bytes")
            }
            StreamError::InvalidUtf8 { chunk } => write!(f, "text chunk {chunk} is not UTF-8"),
            StreamError::SenderLeft { identity } => {
                write!(
                    f,
                    "{identity} left the room in the middle of sending the stream"
                )
            }
            StreamError::Aborted { reason } => write!(f, "stream ended by its sender: {reason}"),
            StreamError::InvalidHeader => f.write_str("stream header has no content type"),
            StreamError::Disconnected => f.write_str("disconnected while receiving"),
        }
    }
}

/// Text or bytes, as the header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Bytes,
}

fn kind_of(h: &data_stream::Header) -> Option<Kind> {
    match h.content_header {
        Some(data_stream::header::ContentHeader::TextHeader(_)) => Some(Kind::Text),
        Some(data_stream::header::ContentHeader::ByteHeader(_)) => Some(Kind::Bytes),
        None => None,
    }
}

/// A packet of a stream, to send reliably to `destinations` (everyone if empty).
pub type Packet = packet::DataPacket;

fn packet(destinations: &[String], value: data_packet::Value) -> Packet {
    packet::DataPacket {
        kind: packet::data_packet::Kind::Reliable as i32,
        destination_identities: destinations.to_vec(),
        value: Some(value),
        ..Default::default()
    }
}

/// Splits `text` into pieces of at most `max` bytes that end on character
/// boundaries (a piece is never empty unless `text` is).
pub fn split_text(text: &str, max: usize) -> impl Iterator<Item = &str> {
    let mut rest = text;
    core::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = rest.len().min(max.max(4));
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

struct Outgoing {
    kind: Kind,
    destinations: Vec<String>,
    next_index: u64,
}

/// Streams we send.
pub struct Sender {
    limit: usize,
    open: BTreeMap<String, Outgoing>,
}

impl Default for Sender {
    fn default() -> Self {
        Sender::new(DEFAULT_MAX_STREAMS)
    }
}

impl Sender {
    pub fn new(limit: usize) -> Self {
        Sender {
            limit,
            open: BTreeMap::new(),
        }
    }

    /// Opens a stream described by `header` (its id, topic, content header...);
    /// returns the header packet.
    pub fn open(
        &mut self,
        header: data_stream::Header,
        destinations: Vec<String>,
    ) -> Result<Packet, StreamError> {
        let kind = kind_of(&header).ok_or(StreamError::InvalidHeader)?;
        if self.open.contains_key(&header.stream_id) {
            return Err(StreamError::DuplicateId);
        }
        if self.open.len() >= self.limit {
            return Err(StreamError::TooManyStreams { limit: self.limit });
        }
        let p = packet(
            &destinations,
            data_packet::Value::StreamHeader(header.clone()),
        );
        self.open.insert(
            header.stream_id,
            Outgoing {
                kind,
                destinations,
                next_index: 0,
            },
        );
        Ok(p)
    }

    /// The chunk packets that carry `data` on stream `id`. A text stream takes
    /// only whole UTF-8 text.
    pub fn write(&mut self, id: &str, data: &[u8]) -> Result<Vec<Packet>, StreamError> {
        let s = self.open.get_mut(id).ok_or(StreamError::UnknownStream)?;
        let pieces: Vec<&[u8]> = match s.kind {
            Kind::Text => {
                let text = core::str::from_utf8(data).map_err(|_| StreamError::InvalidUtf8 {
                    chunk: s.next_index,
                })?;
                split_text(text, CHUNK_SIZE).map(str::as_bytes).collect()
            }
            Kind::Bytes => data.chunks(CHUNK_SIZE).collect(),
        };
        let mut out = Vec::with_capacity(pieces.len());
        for piece in pieces {
            let chunk = data_stream::Chunk {
                stream_id: id.to_string(),
                chunk_index: s.next_index,
                content: piece.to_vec(),
                ..Default::default()
            };
            s.next_index += 1;
            out.push(packet(
                &s.destinations,
                data_packet::Value::StreamChunk(chunk),
            ));
        }
        Ok(out)
    }

    /// Ends stream `id` with a trailer (an empty `reason` is a normal end).
    pub fn close(
        &mut self,
        id: &str,
        reason: &str,
        attributes: BTreeMap<String, String>,
    ) -> Result<Packet, StreamError> {
        let s = self.open.remove(id).ok_or(StreamError::UnknownStream)?;
        let trailer = data_stream::Trailer {
            stream_id: id.to_string(),
            reason: reason.to_string(),
            attributes,
        };
        Ok(packet(
            &s.destinations,
            data_packet::Value::StreamTrailer(trailer),
        ))
    }

    /// Forgets stream `id` without a trailer (e.g. its writer could not send).
    pub fn abandon(&mut self, id: &str) {
        self.open.remove(id);
    }

    pub fn open_streams(&self) -> usize {
        self.open.len()
    }
}

/// What a received stream packet means for its reader.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A new stream from `sender`.
    Opened {
        sender: String,
        kind: Kind,
        header: data_stream::Header,
    },
    /// The next piece of stream `id`, in order (for text, whole characters).
    Chunk {
        id: String,
        index: u64,
        content: Vec<u8>,
    },
    /// Stream `id` ended normally; `attributes` are the trailer's.
    Closed {
        id: String,
        attributes: BTreeMap<String, String>,
    },
    /// Stream `id` ended with an error; nothing more comes for it.
    Failed { id: String, error: StreamError },
    /// A stream could not be opened (e.g. too many at once).
    Refused {
        sender: String,
        header: data_stream::Header,
        error: StreamError,
    },
}

struct Incoming {
    sender: String,
    kind: Kind,
    total: Option<u64>,
    next_index: u64,
    received: u64,
}

/// Streams we receive.
pub struct Receiver {
    limit: usize,
    open: BTreeMap<String, Incoming>,
}

impl Default for Receiver {
    fn default() -> Self {
        Receiver::new(DEFAULT_MAX_STREAMS)
    }
}

impl Receiver {
    pub fn new(limit: usize) -> Self {
        Receiver {
            limit,
            open: BTreeMap::new(),
        }
    }

    /// Takes in a stream packet from `sender` (its content moves on in the
    /// event, uncopied); anything else gives nothing.
    pub fn on_packet(&mut self, sender: &str, value: data_packet::Value) -> Option<Event> {
        match value {
            data_packet::Value::StreamHeader(h) => Some(self.on_header(sender, h)),
            data_packet::Value::StreamChunk(c) => self.on_chunk(sender, c),
            data_packet::Value::StreamTrailer(t) => self.on_trailer(sender, t),
            _ => None,
        }
    }

    fn on_header(&mut self, sender: &str, h: data_stream::Header) -> Event {
        let refuse = |error| Event::Refused {
            sender: sender.to_string(),
            header: h.clone(),
            error,
        };
        let Some(kind) = kind_of(&h) else {
            return refuse(StreamError::InvalidHeader);
        };
        if self.open.contains_key(&h.stream_id) {
            return refuse(StreamError::DuplicateId);
        }
        if self.open.len() >= self.limit {
            return refuse(StreamError::TooManyStreams { limit: self.limit });
        }
        self.open.insert(
            h.stream_id.clone(),
            Incoming {
                sender: sender.to_string(),
                kind,
                total: h.total_length,
                next_index: 0,
                received: 0,
            },
        );
        Event::Opened {
            sender: sender.to_string(),
            kind,
            header: h,
        }
    }

    fn on_chunk(&mut self, sender: &str, c: data_stream::Chunk) -> Option<Event> {
        let s = self.open.get_mut(&c.stream_id)?;
        if s.sender != sender {
            // Only the stream's sender may add to it.
            return None;
        }
        let failure = if c.chunk_index != s.next_index {
            Some(StreamError::OutOfOrder {
                expected: s.next_index,
                got: c.chunk_index,
            })
        } else if s
            .total
            .is_some_and(|t| s.received + c.content.len() as u64 > t)
        {
            Some(StreamError::TooLong {
                announced: s.total.unwrap_or(0),
            })
        } else if s.kind == Kind::Text && core::str::from_utf8(&c.content).is_err() {
            Some(StreamError::InvalidUtf8 {
                chunk: c.chunk_index,
            })
        } else {
            None
        };
        if let Some(error) = failure {
            self.open.remove(&c.stream_id);
            return Some(Event::Failed {
                id: c.stream_id.clone(),
                error,
            });
        }
        s.next_index += 1;
        s.received += c.content.len() as u64;
        Some(Event::Chunk {
            id: c.stream_id,
            index: c.chunk_index,
            content: c.content,
        })
    }

    fn on_trailer(&mut self, sender: &str, t: data_stream::Trailer) -> Option<Event> {
        if self.open.get(&t.stream_id)?.sender != sender {
            return None;
        }
        let s = self.open.remove(&t.stream_id)?;
        let id = t.stream_id;
        if let Some(announced) = s.total.filter(|&a| s.received < a) {
            let error = StreamError::Incomplete {
                announced,
                received: s.received,
            };
            return Some(Event::Failed { id, error });
        }
        if !t.reason.is_empty() {
            let error = StreamError::Aborted { reason: t.reason };
            return Some(Event::Failed { id, error });
        }
        Some(Event::Closed {
            id,
            attributes: t.attributes,
        })
    }

    /// `identity` left the room: its unfinished streams fail.
    pub fn on_participant_left(&mut self, identity: &str) -> Vec<Event> {
        let ids: Vec<String> = self
            .open
            .iter()
            .filter(|(_, s)| s.sender == identity)
            .map(|(id, _)| id.clone())
            .collect();
        ids.into_iter()
            .map(|id| {
                self.open.remove(&id);
                Event::Failed {
                    id,
                    error: StreamError::SenderLeft {
                        identity: identity.to_string(),
                    },
                }
            })
            .collect()
    }

    /// We left the room: every unfinished stream fails.
    pub fn close(&mut self) -> Vec<Event> {
        core::mem::take(&mut self.open)
            .into_keys()
            .map(|id| Event::Failed {
                id,
                error: StreamError::Disconnected,
            })
            .collect()
    }

    /// Nobody reads stream `id` any more: what still comes for it is dropped.
    pub fn discard(&mut self, id: &str) {
        self.open.remove(id);
    }

    pub fn open_streams(&self) -> usize {
        self.open.len()
    }
}

#[cfg(any(test, feature = "selftest"))]
pub(crate) mod tests {
    use super::*;
    use alloc::vec;

    fn header(id: &str, kind: Kind, total: Option<u64>) -> data_stream::Header {
        let content_header = match kind {
            Kind::Text => data_stream::header::ContentHeader::TextHeader(Default::default()),
            Kind::Bytes => {
                data_stream::header::ContentHeader::ByteHeader(data_stream::ByteHeader {
                    name: "f".into(),
                })
            }
        };
        data_stream::Header {
            stream_id: id.into(),
            topic: "t".into(),
            total_length: total,
            content_header: Some(content_header),
            ..Default::default()
        }
    }

    /// A small deterministic generator, so splits vary without a dependency.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) as usize) % n.max(1)
        }
    }

    fn deliver(rx: &mut Receiver, from: &str, packets: &[Packet]) -> Vec<Event> {
        packets
            .iter()
            .filter_map(|p| rx.on_packet(from, p.value.clone().unwrap()))
            .collect()
    }

    fn reassembled(events: &[Event]) -> Vec<u8> {
        events
            .iter()
            .flat_map(|e| match e {
                Event::Chunk { content, .. } => content.clone(),
                _ => Vec::new(),
            })
            .collect()
    }

    #[cfg_attr(test, test)]
    fn random_writes_come_back_identical_in_chunks_of_at_most_15000_bytes() {
        let mut rng = Lcg(7);
        let text: String = (0..120_000)
            .map(|i| ['a', 'é', '€', '😀'][(i * 7 + i / 3) % 4])
            .collect();
        for round in 0..5 {
            let (mut tx, mut rx) = (Sender::default(), Receiver::default());
            let id = alloc::format!("s{round}");
            let total = text.len() as u64;
            let mut packets = vec![tx
                .open(header(&id, Kind::Text, Some(total)), vec![])
                .unwrap()];
            let mut rest = text.as_str();
            while !rest.is_empty() {
                let mut cut = rng.next(40_000).min(rest.len());
                while !rest.is_char_boundary(cut) {
                    cut += 1;
                }
                let (piece, tail) = rest.split_at(cut);
                packets.extend(tx.write(&id, piece.as_bytes()).unwrap());
                rest = tail;
            }
            packets.push(tx.close(&id, "", BTreeMap::new()).unwrap());
            for p in &packets {
                if let Some(data_packet::Value::StreamChunk(c)) = &p.value {
                    assert!(c.content.len() <= CHUNK_SIZE);
                    assert!(core::str::from_utf8(&c.content).is_ok());
                }
            }
            let events = deliver(&mut rx, "alice", &packets);
            assert!(matches!(
                events[0],
                Event::Opened {
                    kind: Kind::Text,
                    ..
                }
            ));
            assert!(matches!(events.last(), Some(Event::Closed { .. })));
            assert_eq!(reassembled(&events), text.as_bytes());
            assert_eq!((tx.open_streams(), rx.open_streams()), (0, 0));
        }
    }

    fn byte_stream(len: usize) -> Vec<Packet> {
        let mut tx = Sender::default();
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut p = vec![tx
            .open(header("b", Kind::Bytes, Some(len as u64)), vec![])
            .unwrap()];
        p.extend(tx.write("b", &data).unwrap());
        p.push(tx.close("b", "", BTreeMap::new()).unwrap());
        p
    }

    #[cfg_attr(test, test)]
    fn reordered_missing_or_repeated_chunks_fail_the_stream() {
        let packets = byte_stream(50_000); // header, 4 chunks, trailer
        for (name, order) in [
            ("reordered", vec![0, 2, 1, 3, 4, 5]),
            ("missing", vec![0, 1, 3, 4, 5]),
            ("repeated", vec![0, 1, 1, 2, 3, 4, 5]),
        ] {
            let mut rx = Receiver::default();
            let picked: Vec<Packet> = order.iter().map(|&i| packets[i].clone()).collect();
            let events = deliver(&mut rx, "alice", &picked);
            let failed = events
                .iter()
                .find(|e| matches!(e, Event::Failed { .. }))
                .unwrap_or_else(|| panic!("{name}: no failure"));
            assert!(
                matches!(
                    failed,
                    Event::Failed {
                        error: StreamError::OutOfOrder { .. },
                        ..
                    }
                ),
                "{name}: {failed:?}"
            );
            assert!(
                !events.iter().any(|e| matches!(e, Event::Closed { .. })),
                "{name}"
            );
            assert_eq!(rx.open_streams(), 0);
        }
    }

    #[cfg_attr(test, test)]
    fn length_mismatches_and_corrupt_text_fail_the_stream() {
        // Fewer bytes than announced.
        let mut packets = byte_stream(20_000);
        if let Some(data_packet::Value::StreamHeader(h)) = &mut packets[0].value {
            h.total_length = Some(30_000);
        }
        let events = deliver(&mut Receiver::default(), "a", &packets);
        assert!(matches!(
            events.last(),
            Some(Event::Failed {
                error: StreamError::Incomplete {
                    announced: 30_000,
                    received: 20_000
                },
                ..
            })
        ));
        // More bytes than announced.
        if let Some(data_packet::Value::StreamHeader(h)) = &mut packets[0].value {
            h.total_length = Some(10_000);
        }
        let events = deliver(&mut Receiver::default(), "a", &packets);
        assert!(matches!(
            events[1],
            Event::Failed {
                error: StreamError::TooLong { .. },
                ..
            }
        ));
        // A text chunk cut inside a character.
        let mut rx = Receiver::default();
        rx.on_packet(
            "a",
            data_packet::Value::StreamHeader(header("t", Kind::Text, None)),
        );
        let bad = data_stream::Chunk {
            stream_id: "t".into(),
            content: "é".as_bytes()[..1].to_vec(),
            ..Default::default()
        };
        let e = rx
            .on_packet("a", data_packet::Value::StreamChunk(bad))
            .unwrap();
        assert!(matches!(
            e,
            Event::Failed {
                error: StreamError::InvalidUtf8 { chunk: 0 },
                ..
            }
        ));
    }

    #[cfg_attr(test, test)]
    fn a_sender_that_leaves_or_aborts_fails_its_streams_only() {
        let mut rx = Receiver::default();
        rx.on_packet(
            "a",
            data_packet::Value::StreamHeader(header("1", Kind::Text, None)),
        );
        rx.on_packet(
            "b",
            data_packet::Value::StreamHeader(header("2", Kind::Text, None)),
        );
        // Someone else cannot add to or end a stream.
        let foreign = data_stream::Trailer {
            stream_id: "1".into(),
            ..Default::default()
        };
        assert!(rx
            .on_packet("b", data_packet::Value::StreamTrailer(foreign))
            .is_none());
        let left = rx.on_participant_left("a");
        assert_eq!(left.len(), 1);
        assert!(
            matches!(&left[0], Event::Failed { id, error: StreamError::SenderLeft { .. } } if id == "1")
        );
        let aborted = data_stream::Trailer {
            stream_id: "2".into(),
            reason: "cancelled".into(),
            ..Default::default()
        };
        let e = rx
            .on_packet("b", data_packet::Value::StreamTrailer(aborted))
            .unwrap();
        assert!(matches!(
            e,
            Event::Failed {
                error: StreamError::Aborted { .. },
                ..
            }
        ));
    }

    #[cfg_attr(test, test)]
    fn stream_bounds_give_clear_errors() {
        let mut tx = Sender::new(2);
        tx.open(header("1", Kind::Bytes, None), vec![]).unwrap();
        assert_eq!(
            tx.open(header("1", Kind::Bytes, None), vec![]),
            Err(StreamError::DuplicateId)
        );
        tx.open(header("2", Kind::Bytes, None), vec![]).unwrap();
        assert_eq!(
            tx.open(header("3", Kind::Bytes, None), vec![]),
            Err(StreamError::TooManyStreams { limit: 2 })
        );
        assert_eq!(tx.write("9", b"x"), Err(StreamError::UnknownStream));
        tx.close("1", "", BTreeMap::new()).unwrap();
        tx.open(header("3", Kind::Bytes, None), vec![]).unwrap();

        let mut rx = Receiver::new(1);
        rx.on_packet(
            "a",
            data_packet::Value::StreamHeader(header("1", Kind::Text, None)),
        );
        let e = rx
            .on_packet(
                "a",
                data_packet::Value::StreamHeader(header("2", Kind::Text, None)),
            )
            .unwrap();
        assert!(matches!(
            e,
            Event::Refused {
                error: StreamError::TooManyStreams { limit: 1 },
                ..
            }
        ));
        // Chunks of a refused or discarded stream are dropped, not misread.
        let c = data_stream::Chunk {
            stream_id: "2".into(),
            ..Default::default()
        };
        assert!(rx
            .on_packet("a", data_packet::Value::StreamChunk(c))
            .is_none());
    }

    #[cfg_attr(test, test)]
    fn text_splits_on_character_boundaries() {
        let s = "ab€d";
        let parts: Vec<&str> = split_text(s, 4).collect();
        assert_eq!(parts, vec!["ab", "€d"]);
        assert_eq!(split_text("", 4).count(), 0);
    }

    /// Every test above, for the bare-metal runner (`selftest` feature).
    pub(crate) const TESTS: &[(&str, fn())] = &[
        (
            "random_writes_come_back_identical_in_chunks_of_at_most_15000_bytes",
            random_writes_come_back_identical_in_chunks_of_at_most_15000_bytes,
        ),
        (
            "reordered_missing_or_repeated_chunks_fail_the_stream",
            reordered_missing_or_repeated_chunks_fail_the_stream,
        ),
        (
            "length_mismatches_and_corrupt_text_fail_the_stream",
            length_mismatches_and_corrupt_text_fail_the_stream,
        ),
        (
            "a_sender_that_leaves_or_aborts_fails_its_streams_only",
            a_sender_that_leaves_or_aborts_fails_its_streams_only,
        ),
        (
            "stream_bounds_give_clear_errors",
            stream_bounds_give_clear_errors,
        ),
        (
            "text_splits_on_character_boundaries",
            text_splits_on_character_boundaries,
        ),
    ];
}
