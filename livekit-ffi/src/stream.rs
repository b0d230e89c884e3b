//! Data streams for a room: the core's [`livekit_core::stream`] state with stream
//! ids, timestamps and the room's outbox.
//!
//! Sending awaits room in the outbox chunk by chunk, so a large stream never sits
//! whole in the core; receiving turns packets into [`RoomEvent`]s in order with the
//! room's other data.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use livekit_core::packet::{data_packet, data_stream};
use livekit_core::stream::{Event, Receiver, Sender};
use parking_lot::Mutex;

/// A stream's header as it travels: id, topic, mime type, timestamp, total
/// length, attributes, and the text or byte details.
pub use livekit_core::packet::data_stream::Header as StreamHeader;
pub use livekit_core::stream::{
    Kind as StreamKind, StreamError, BYTES_MIME_TYPE, CHUNK_SIZE as STREAM_CHUNK_SIZE,
    DEFAULT_MAX_STREAMS, TEXT_MIME_TYPE,
};

use crate::error::{Error, Result};
use crate::outbox::Outbox;
use crate::room::RoomEvent;

/// What a new outgoing stream is.
#[derive(Debug, Clone, Default)]
pub struct StreamOptions {
    pub topic: String,
    pub attributes: HashMap<String, String>,
    /// Recipients; everyone when empty.
    pub destination_identities: Vec<String>,
    /// A random id when `None`.
    pub id: Option<String>,
    /// `text/plain` or `application/octet-stream` when `None`.
    pub mime_type: Option<String>,
    pub total_length: Option<u64>,
    /// A byte stream's name (`None` makes a text stream).
    pub name: Option<String>,
    /// A text stream's details (ignored for byte streams).
    pub text: data_stream::TextHeader,
}

impl StreamOptions {
    pub fn text(topic: &str) -> Self {
        StreamOptions {
            topic: topic.to_owned(),
            ..Default::default()
        }
    }

    pub fn bytes(topic: &str, name: &str) -> Self {
        StreamOptions {
            topic: topic.to_owned(),
            name: Some(name.to_owned()),
            ..Default::default()
        }
    }

    /// The header this stream opens with.
    pub fn header(&self) -> StreamHeader {
        let (content, mime) = match &self.name {
            Some(name) => (
                data_stream::header::ContentHeader::ByteHeader(data_stream::ByteHeader {
                    name: name.clone(),
                }),
                BYTES_MIME_TYPE,
            ),
            None => (
                data_stream::header::ContentHeader::TextHeader(self.text.clone()),
                TEXT_MIME_TYPE,
            ),
        };
        let timestamp = crate::engine::unix_millis();
        StreamHeader {
            stream_id: self.id.clone().unwrap_or_else(crate::rpc::random_id),
            timestamp,
            topic: self.topic.clone(),
            mime_type: self.mime_type.clone().unwrap_or_else(|| mime.to_owned()),
            total_length: self.total_length,
            encryption_type: 0,
            attributes: self
                .attributes
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            content_header: Some(content),
        }
    }
}

/// The callbacks of one topic's incoming streams (the ESP32 SDK's handler). They
/// run on the room's driver task, in order with everything the room receives:
/// keep them short and hand longer work elsewhere.
pub trait StreamHandler: Send + Sync {
    /// A stream on this topic began.
    fn on_open(&self, _sender: &str, _header: &StreamHeader) {}
    /// The next piece of `stream_id` (index 0, 1, 2...; text: whole characters).
    fn on_chunk(&self, stream_id: &str, index: u64, content: &[u8]);
    /// `stream_id` ended: `reason` is empty for a normal end, else the sender's
    /// trailer reason or what went wrong here (a missing chunk, the sender left...).
    fn on_close(&self, _stream_id: &str, _reason: &str, _attributes: &BTreeMap<String, String>) {}
}

pub(crate) struct Streams {
    sender: Mutex<Sender>,
    receiver: Mutex<Receiver>,
    writers: usize,
    /// Topic handlers, and the streams they took.
    handlers: Mutex<HashMap<String, Arc<dyn StreamHandler>>>,
    routed: Mutex<HashMap<String, Arc<dyn StreamHandler>>>,
}

impl Streams {
    pub(crate) fn new(writers: usize, readers: usize) -> Self {
        Streams {
            sender: Mutex::new(Sender::new(writers)),
            receiver: Mutex::new(Receiver::new(readers)),
            writers,
            handlers: Mutex::new(HashMap::new()),
            routed: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) async fn open(
        &self,
        outbox: &Outbox,
        identity: &str,
        header: StreamHeader,
        destinations: Vec<String>,
    ) -> Result<()> {
        let id = header.stream_id.clone();
        let p = self
            .sender
            .lock()
            .open(header, destinations)
            .map_err(Error::Stream)?;
        self.send(outbox, identity, &id, vec![p]).await
    }

    /// Writes `data` (whole UTF-8 text on a text stream) as numbered chunks.
    pub(crate) async fn write(
        &self,
        outbox: &Outbox,
        identity: &str,
        id: &str,
        data: &[u8],
    ) -> Result<()> {
        let packets = self.sender.lock().write(id, data).map_err(Error::Stream)?;
        self.send(outbox, identity, id, packets).await
    }

    /// Ends the stream with its trailer (an empty `reason` is a normal end).
    pub(crate) async fn close(
        &self,
        outbox: &Outbox,
        identity: &str,
        id: &str,
        reason: &str,
        attributes: BTreeMap<String, String>,
    ) -> Result<()> {
        let p = self
            .sender
            .lock()
            .close(id, reason, attributes)
            .map_err(Error::Stream)?;
        self.send(outbox, identity, id, vec![p]).await
    }

    async fn send(
        &self,
        outbox: &Outbox,
        identity: &str,
        id: &str,
        packets: Vec<livekit_core::packet::DataPacket>,
    ) -> Result<()> {
        let packets = packets
            .into_iter()
            .filter_map(|p| Some((p.destination_identities, p.value?)))
            .collect();
        let sent = outbox.send_packets_when_room(identity, packets).await;
        if sent.is_err() {
            // Nothing more can follow a lost packet on this stream.
            self.sender.lock().abandon(id);
        }
        sent
    }

    /// Takes in a stream packet from `sender`; `None` for packets of other kinds
    /// and for streams a topic handler takes.
    pub(crate) fn on_packet(&self, sender: &str, value: data_packet::Value) -> Option<RoomEvent> {
        let event = self.receiver.lock().on_packet(sender, value)?;
        self.dispatch(event)
    }

    /// Gives `event` to its topic's handler, or makes it a room event.
    fn dispatch(&self, event: Event) -> Option<RoomEvent> {
        let id = match &event {
            Event::Opened { header, .. } => {
                let handler = self.handlers.lock().get(&header.topic).cloned();
                if let (Some(h), Event::Opened { sender, header, .. }) = (handler, &event) {
                    self.routed
                        .lock()
                        .insert(header.stream_id.clone(), h.clone());
                    h.on_open(sender, header);
                    return None;
                }
                None
            }
            Event::Chunk { id, .. } | Event::Closed { id, .. } | Event::Failed { id, .. } => {
                Some(id.clone())
            }
            Event::Refused { .. } => None,
        };
        if let Some(id) = id {
            let handler = self.routed.lock().get(&id).cloned();
            if let Some(h) = handler {
                match &event {
                    Event::Chunk { index, content, .. } => h.on_chunk(&id, *index, content),
                    Event::Closed { attributes, .. } => {
                        self.routed.lock().remove(&id);
                        h.on_close(&id, "", attributes);
                    }
                    Event::Failed { error, .. } => {
                        self.routed.lock().remove(&id);
                        let reason = match error {
                            StreamError::Aborted { reason } => reason.clone(),
                            other => other.to_string(),
                        };
                        h.on_close(&id, &reason, &BTreeMap::new());
                    }
                    _ => {}
                }
                return None;
            }
        }
        Some(match event {
            Event::Opened {
                sender,
                kind,
                header,
            } => RoomEvent::StreamOpened {
                sender,
                kind,
                header,
            },
            Event::Chunk { id, content, .. } => RoomEvent::StreamChunk { id, content },
            Event::Closed { id, attributes } => RoomEvent::StreamClosed { id, attributes },
            Event::Failed { id, error } => RoomEvent::StreamFailed { id, error },
            Event::Refused {
                sender,
                header,
                error,
            } => {
                log::warn!(
                    "refusing stream {} on topic {:?} from {sender}: {error}",
                    header.stream_id,
                    header.topic
                );
                return None;
            }
        })
    }

    /// `identity` left: its unfinished streams fail.
    pub(crate) fn participant_left(&self, identity: &str) -> Vec<RoomEvent> {
        let failed = self.receiver.lock().on_participant_left(identity);
        failed
            .into_iter()
            .filter_map(|e| self.dispatch(e))
            .collect()
    }

    /// We left: unfinished incoming streams fail, outgoing ones are forgotten.
    pub(crate) fn shutdown(&self) -> Vec<RoomEvent> {
        *self.sender.lock() = Sender::new(self.writers);
        let failed = self.receiver.lock().close();
        failed
            .into_iter()
            .filter_map(|e| self.dispatch(e))
            .collect()
    }

    pub(crate) fn register(&self, topic: &str, handler: Arc<dyn StreamHandler>) {
        self.handlers.lock().insert(topic.to_owned(), handler);
    }

    pub(crate) fn unregister(&self, topic: &str) {
        self.handlers.lock().remove(topic);
    }

    /// Nobody reads stream `id`: what still comes for it is dropped.
    pub(crate) fn discard(&self, id: &str) {
        self.receiver.lock().discard(id);
    }
}

/// An open outgoing stream. Write to it, then close it; dropped unclosed, it ends
/// with a trailer that tells the readers it was abandoned.
pub struct StreamWriter {
    pub(crate) room: crate::Room,
    pub(crate) header: StreamHeader,
    pub(crate) closed: bool,
}

impl std::fmt::Debug for StreamWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamWriter")
            .field("id", &self.header.stream_id)
            .finish()
    }
}

impl StreamWriter {
    pub fn header(&self) -> &StreamHeader {
        &self.header
    }

    pub fn id(&self) -> &str {
        &self.header.stream_id
    }

    /// Sends `data` (on a text stream: UTF-8 text, split only between characters).
    pub async fn write(&self, data: &[u8]) -> Result<()> {
        self.room.stream_write(&self.header.stream_id, data).await
    }

    /// Ends the stream; an empty `reason` is a normal end, any other tells the
    /// readers why it was cut short.
    pub async fn close(mut self, reason: &str, attributes: HashMap<String, String>) -> Result<()> {
        self.closed = true;
        let attributes = attributes.into_iter().collect();
        self.room
            .stream_close(&self.header.stream_id, reason, attributes)
            .await
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        if !self.closed {
            self.room.stream_drop(&self.header.stream_id);
        }
    }
}

impl Streams {
    /// Ends stream `id` without waiting (its writer went away unclosed).
    pub(crate) fn close_now(&self, outbox: &Outbox, identity: &str, id: &str, reason: &str) {
        let Ok(p) = self.sender.lock().close(id, reason, BTreeMap::new()) else {
            return;
        };
        if let Some(value) = p.value {
            let packet = crate::outbox::Packet {
                identity,
                destinations: p.destination_identities,
                value,
            };
            let _ = outbox.send_packet(packet, crate::DataKind::Reliable, Box::new(|_| {}));
        }
    }
}
