//! livekit-device: a LiveKit participant on a microcontroller, without I/O.
//!
//! The device does not speak WebRTC itself: a gateway (`livekit-gateway`, on our host
//! core) holds its session in the room and relays LiveKit's own data packets over a
//! framed link (`livekit_core::link`: a serial line, or TCP over Wi-Fi). Everything
//! else runs here, from `livekit-core`, as on the host: the connection state and its
//! failure reasons, link retries, RPC in both directions, data streams and user data.
//!
//! Sans-IO like the rest of the core: the firmware (or a host simulation) feeds in link
//! bytes, link up/down and the time in milliseconds, and writes out what
//! [`Device::poll_transmit`] returns; what happened comes from [`Device::poll_event`].
#![no_std]

extern crate alloc;

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use livekit_core::link::{self, proto as lp, Decoder, Msg};
use livekit_core::packet::{self, data_packet, data_stream};
use livekit_core::rpc::{self, Call, ErrorCode, Invocation, RpcClient, RpcError, RpcServer};
use livekit_core::stream::{self, StreamError};
pub use livekit_core::{ConnectionState, DataKind, FailureReason, RetryPolicy};

/// How the device behaves; the defaults are the ESP32 SDK's.
#[derive(Debug, Clone)]
pub struct Config {
    /// Names the device to its gateway (logs, and finding its session again after
    /// the link comes back).
    pub device_id: String,
    /// Link retries after a loss (`CONFIG_LK_MAX_RETRIES`: 7 attempts).
    pub retry: RetryPolicy,
    /// Incoming data streams at once (`CONFIG_LK_MAX_DATA_STREAM_READERS`).
    pub max_stream_readers: usize,
    /// Outgoing data streams at once (`CONFIG_LK_MAX_DATA_STREAM_WRITERS`).
    pub max_stream_writers: usize,
    /// A ping to the gateway after this long without sending anything.
    pub ping_interval_ms: u64,
    /// The link is lost after this long without hearing from the gateway.
    pub link_timeout_ms: u64,
    /// Packets kept while the link is down (sent when the room is back); more are
    /// refused.
    pub max_queued_packets: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            device_id: String::from("device"),
            retry: RetryPolicy::default(),
            max_stream_readers: stream::DEFAULT_MAX_STREAMS,
            max_stream_writers: stream::DEFAULT_MAX_STREAMS,
            ping_interval_ms: 2_000,
            link_timeout_ms: 6_000,
            max_queued_packets: 64,
        }
    }
}

/// Why a call was refused at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceError {
    /// `connect` while a session is under way.
    AlreadyConnected,
    /// Needs a room (connect first).
    NotConnected,
    /// The URL or token is empty.
    InvalidArgument(&'static str),
    /// The link is down and its queue is full.
    QueueFull,
    /// A packet larger than a link frame.
    TooLarge,
    Stream(StreamError),
    Rpc(RpcError),
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadyConnected => f.write_str("already connected or connecting"),
            Self::NotConnected => f.write_str("not connected"),
            Self::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            Self::QueueFull => f.write_str("the link is down and its queue is full"),
            Self::TooLarge => f.write_str("the packet is larger than a link frame"),
            Self::Stream(e) => write!(f, "data stream: {e}"),
            Self::Rpc(e) => write!(f, "rpc: {e}"),
        }
    }
}

/// What happened, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    StateChanged {
        state: ConnectionState,
        reason: FailureReason,
    },
    /// The room was joined (again, after a new session): who we are in it.
    Joined {
        room: String,
        identity: String,
        participants: Vec<String>,
    },
    ParticipantLeft {
        identity: String,
    },
    DataReceived {
        sender: String,
        topic: Option<String>,
        payload: Vec<u8>,
        kind: DataKind,
    },
    /// A call of a registered method: answer it with [`Device::rpc_respond`].
    RpcInvocation(Invocation),
    /// The outcome of [`Device::perform_rpc`] call `call`.
    RpcResult {
        call: u64,
        outcome: rpc::Outcome,
    },
    /// A stream on a registered topic began.
    StreamOpened {
        sender: String,
        header: data_stream::Header,
        is_text: bool,
    },
    StreamChunk {
        id: String,
        index: u64,
        content: Vec<u8>,
    },
    /// The stream ended: `reason` is empty for a normal end, else why it ended early.
    StreamClosed {
        id: String,
        reason: String,
    },
}

/// What to open an outgoing stream with.
#[derive(Debug, Clone, Default)]
pub struct StreamOptions {
    pub topic: String,
    pub is_text: bool,
    pub total_length: Option<u64>,
    /// Recipients (identities); empty for everyone.
    pub destinations: Vec<String>,
    /// Byte streams: a file name for the receiver.
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkPhase {
    Down,
    /// Hello sent, Welcome awaited.
    Greeting,
    Up,
}

/// One participant's session, driven through the link; see the crate doc.
pub struct Device {
    config: Config,
    rng: u64,
    state: ConnectionState,
    reason: FailureReason,
    /// URL and token while a session is wanted.
    target: Option<(String, String)>,
    /// The room was joined at least once in this session (a later loss is a
    /// reconnection, not a failed first join).
    joined_once: bool,
    identity: String,
    link: LinkPhase,
    decoder: Decoder,
    /// Consecutive link attempts since the last good link.
    attempt: u32,
    lost_at: Option<u64>,
    retry_at: u64,
    last_heard: u64,
    last_sent: u64,
    next_ping_id: u64,
    /// The link should be closed by the transport (it stopped answering).
    drop_link: bool,
    /// Milliseconds to add to `now` for the Unix time (learned from the gateway).
    unix_offset: Option<i64>,
    tx: VecDeque<Vec<u8>>,
    /// Packets waiting for the room to be connected again.
    queued: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    rpc_client: RpcClient,
    rpc_server: RpcServer,
    next_call: u64,
    streams_out: stream::Sender,
    streams_in: stream::Receiver,
    topics: BTreeSet<String>,
    /// Incoming stream ids on registered topics, with whether they are text.
    accepted: BTreeMap<String, bool>,
}

impl Device {
    /// A device with no session; `seed` seeds the ids it makes (request and stream
    /// ids): give it something random (the chip's RNG).
    pub fn new(config: Config, seed: u64) -> Self {
        Self {
            streams_out: stream::Sender::new(config.max_stream_writers),
            streams_in: stream::Receiver::new(config.max_stream_readers),
            config,
            rng: seed | 1,
            state: ConnectionState::Disconnected,
            reason: FailureReason::None,
            target: None,
            joined_once: false,
            identity: String::new(),
            link: LinkPhase::Down,
            decoder: Decoder::new(),
            attempt: 0,
            lost_at: None,
            retry_at: 0,
            last_heard: 0,
            last_sent: 0,
            next_ping_id: 1,
            drop_link: false,
            unix_offset: None,
            tx: VecDeque::new(),
            queued: VecDeque::new(),
            events: VecDeque::new(),
            rpc_client: RpcClient::new(),
            rpc_server: RpcServer::new(),
            next_call: 1,
            topics: BTreeSet::new(),
            accepted: BTreeMap::new(),
        }
    }

    pub fn state(&self) -> ConnectionState {
        self.state
    }

    pub fn failure_reason(&self) -> FailureReason {
        self.reason
    }

    /// Our identity in the room (empty before the first join).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    // ---- the session ----------------------------------------------------------------

    /// Joins the room `token` is for, through the gateway; progress comes as
    /// [`Event::StateChanged`].
    pub fn connect(&mut self, now: u64, url: &str, token: &str) -> Result<(), DeviceError> {
        if url.is_empty() {
            return Err(DeviceError::InvalidArgument("server URL"));
        }
        if token.is_empty() {
            return Err(DeviceError::InvalidArgument("token"));
        }
        if self.target.is_some() {
            return Err(DeviceError::AlreadyConnected);
        }
        self.target = Some((url.to_string(), token.to_string()));
        self.joined_once = false;
        self.attempt = 0;
        self.lost_at = None;
        self.retry_at = now;
        self.set_state(ConnectionState::Connecting, FailureReason::None);
        if self.link == LinkPhase::Up {
            self.send_connect(now);
        }
        Ok(())
    }

    /// Leaves the room. Calls under way fail, streams end; the link stays up.
    pub fn close(&mut self, now: u64) {
        if self.target.take().is_none() {
            return;
        }
        if self.link == LinkPhase::Up {
            self.send(now, Msg::Close(lp::Close {}));
        }
        self.end_session(ErrorCode::RecipientDisconnected);
        self.set_state(ConnectionState::Disconnected, FailureReason::None);
    }

    // ---- the link -------------------------------------------------------------------

    /// Whether the transport should open the link now (a session wants it and the
    /// retry delay has passed).
    pub fn wants_link(&self, now: u64) -> bool {
        self.target.is_some() && self.link == LinkPhase::Down && now >= self.retry_at
    }

    /// The transport opened the link.
    pub fn link_up(&mut self, now: u64) {
        self.decoder.reset();
        self.drop_link = false;
        self.link = LinkPhase::Greeting;
        self.last_heard = now;
        self.tx.clear();
        self.send(
            now,
            Msg::Hello(lp::Hello {
                version: u32::from(link::VERSION),
                device_id: self.config.device_id.clone(),
            }),
        );
    }

    /// The link was lost, or could not be opened: retry later, or give up.
    pub fn link_down(&mut self, now: u64) {
        self.link = LinkPhase::Down;
        self.tx.clear();
        self.decoder.reset();
        if self.target.is_none() {
            return;
        }
        let lost_at = *self.lost_at.get_or_insert(now);
        let elapsed = core::time::Duration::from_millis(now.saturating_sub(lost_at));
        match self.config.retry.next(self.attempt, elapsed) {
            Some(delay) => {
                self.attempt += 1;
                self.retry_at = now.saturating_add(delay.as_millis() as u64);
                if self.state == ConnectionState::Connected {
                    self.set_state(ConnectionState::Reconnecting, FailureReason::None);
                }
            }
            None => {
                // Never reached the room: the gateway is unreachable; lost after
                // being in it: out of retries.
                let reason = if self.joined_once {
                    FailureReason::MaxRetries
                } else {
                    FailureReason::Unreachable
                };
                self.target = None;
                self.end_session(ErrorCode::RecipientDisconnected);
                self.set_state(ConnectionState::Failed, reason);
            }
        }
    }

    /// `true` once: the link stopped answering and the transport should close it
    /// (the device already counts it as down).
    pub fn take_link_drop(&mut self) -> bool {
        core::mem::take(&mut self.drop_link)
    }

    /// Bytes read from the link.
    pub fn handle_input(&mut self, now: u64, bytes: &[u8]) {
        if self.link == LinkPhase::Down {
            return;
        }
        self.decoder.push(bytes);
        while let Some(next) = self.decoder.next_message() {
            // A garbled frame costs that message only; what is above it (RPC
            // timeouts, the reliable resend of the room) covers the loss.
            if let Ok(message) = next {
                self.last_heard = now;
                if let Some(m) = message.message {
                    self.on_message(now, m);
                }
            }
            if self.link == LinkPhase::Down {
                break;
            }
        }
    }

    /// The next frame to write to the link.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.tx.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Device::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<u64> {
        let mut next = self.rpc_client.next_deadline();
        let mut at = |t: u64| next = Some(next.map_or(t, |n| n.min(t)));
        match self.link {
            LinkPhase::Down if self.target.is_some() => at(self.retry_at),
            LinkPhase::Down => {}
            _ => {
                at(self.last_heard.saturating_add(self.config.link_timeout_ms));
                if self.link == LinkPhase::Up {
                    at(self.last_sent.saturating_add(self.config.ping_interval_ms));
                }
            }
        }
        next
    }

    pub fn handle_timeout(&mut self, now: u64) {
        for (call, outcome) in self.rpc_client.poll_timeouts(now) {
            self.events.push_back(Event::RpcResult { call, outcome });
        }
        if self.link == LinkPhase::Down {
            return;
        }
        if now >= self.last_heard.saturating_add(self.config.link_timeout_ms) {
            self.drop_link = true;
            self.link_down(now);
            return;
        }
        if self.link == LinkPhase::Up
            && now >= self.last_sent.saturating_add(self.config.ping_interval_ms)
        {
            let id = self.next_ping_id;
            self.next_ping_id += 1;
            self.send(now, Msg::Ping(lp::Ping { id }));
        }
    }

    // ---- RPC ------------------------------------------------------------------------

    /// Accepts calls of `method`; they come as [`Event::RpcInvocation`]. Calls of
    /// other methods are refused for us (`UNSUPPORTED_METHOD`).
    pub fn register_rpc_method(&mut self, method: &str) {
        self.rpc_server.register(method);
    }

    pub fn unregister_rpc_method(&mut self, method: &str) {
        self.rpc_server.unregister(method);
    }

    /// Answers invocation `id`; `false` when it is not pending.
    pub fn rpc_respond(&mut self, now: u64, id: u64, answer: Result<String, RpcError>) -> bool {
        match self.rpc_server.respond(id, answer) {
            Some(out) => {
                // An answer that cannot go out now fails on the caller's side by
                // its own timeout.
                let _ = self.send_packet(now, DataKind::Reliable, &out.packet);
                true
            }
            None => false,
        }
    }

    /// Calls `method` of `destination`; the outcome comes as [`Event::RpcResult`]
    /// with the returned call id.
    pub fn perform_rpc(
        &mut self,
        now: u64,
        destination: &str,
        method: &str,
        payload: &str,
        response_timeout_ms: u64,
    ) -> Result<u64, DeviceError> {
        if self.target.is_none() {
            return Err(DeviceError::NotConnected);
        }
        let call = self.next_call;
        self.next_call += 1;
        let request_id = self.uuid();
        let out = self
            .rpc_client
            .perform(
                now,
                call,
                request_id.clone(),
                Call {
                    destination: destination.to_string(),
                    method: method.to_string(),
                    payload: payload.to_string(),
                    response_timeout_ms,
                    max_round_trip_ms: rpc::DEFAULT_MAX_ROUND_TRIP_MS,
                },
            )
            .map_err(DeviceError::Rpc)?;
        if let Err(e) = self.send_packet(now, DataKind::Reliable, &out.packet) {
            self.rpc_client.send_failed(&request_id, "");
            return Err(e);
        }
        Ok(call)
    }

    // ---- data -----------------------------------------------------------------------

    /// Sends user data to everyone (or to `destinations`).
    pub fn publish_data(
        &mut self,
        now: u64,
        payload: &[u8],
        topic: Option<&str>,
        destinations: &[String],
        kind: DataKind,
    ) -> Result<(), DeviceError> {
        if self.target.is_none() {
            return Err(DeviceError::NotConnected);
        }
        let p = packet::DataPacket {
            kind: kind.packet_kind() as i32,
            destination_identities: destinations.to_vec(),
            value: Some(data_packet::Value::User(packet::UserPacket {
                payload: payload.to_vec(),
                topic: topic.map(str::to_string),
                destination_identities: destinations.to_vec(),
                ..Default::default()
            })),
            ..Default::default()
        };
        self.send_packet(now, kind, &p)
    }

    // ---- data streams ---------------------------------------------------------------

    /// Streams on `topic` are received (as `StreamOpened`, `StreamChunk`s and
    /// `StreamClosed`); streams on other topics are ignored.
    pub fn register_stream_topic(&mut self, topic: &str) {
        self.topics.insert(topic.to_string());
    }

    pub fn unregister_stream_topic(&mut self, topic: &str) {
        self.topics.remove(topic);
    }

    /// Opens an outgoing stream; returns its id for `stream_write` / `stream_close`.
    pub fn stream_open(
        &mut self,
        now: u64,
        options: &StreamOptions,
    ) -> Result<String, DeviceError> {
        if self.target.is_none() {
            return Err(DeviceError::NotConnected);
        }
        if options.topic.is_empty() {
            return Err(DeviceError::InvalidArgument("topic"));
        }
        let id = self.uuid();
        let content = if options.is_text {
            data_stream::header::ContentHeader::TextHeader(data_stream::TextHeader::default())
        } else {
            data_stream::header::ContentHeader::ByteHeader(data_stream::ByteHeader {
                name: options.name.clone(),
            })
        };
        let header = data_stream::Header {
            stream_id: id.clone(),
            timestamp: self.unix_ms(now),
            topic: options.topic.clone(),
            mime_type: String::from(if options.is_text {
                stream::TEXT_MIME_TYPE
            } else {
                stream::BYTES_MIME_TYPE
            }),
            total_length: options.total_length,
            content_header: Some(content),
            ..Default::default()
        };
        let p = self
            .streams_out
            .open(header, options.destinations.clone())
            .map_err(DeviceError::Stream)?;
        if let Err(e) = self.send_packet(now, DataKind::Reliable, &p) {
            self.streams_out.abandon(&id);
            return Err(e);
        }
        Ok(id)
    }

    /// Writes to stream `id`, in chunks of at most 15000 bytes (text is split on
    /// character boundaries).
    pub fn stream_write(&mut self, now: u64, id: &str, data: &[u8]) -> Result<(), DeviceError> {
        let packets = self
            .streams_out
            .write(id, data)
            .map_err(DeviceError::Stream)?;
        for p in &packets {
            self.send_packet(now, DataKind::Reliable, p)?;
        }
        Ok(())
    }

    /// Ends stream `id` (`reason` empty: a normal end) and frees its slot.
    pub fn stream_close(&mut self, now: u64, id: &str, reason: &str) -> Result<(), DeviceError> {
        let p = self
            .streams_out
            .close(id, reason, BTreeMap::new())
            .map_err(DeviceError::Stream)?;
        self.send_packet(now, DataKind::Reliable, &p)
    }

    // ---- inside ---------------------------------------------------------------------

    fn on_message(&mut self, now: u64, m: Msg) {
        match m {
            Msg::Welcome(w) => {
                if w.version != u32::from(link::VERSION) {
                    // Nothing to say to this gateway: try again later (it may be
                    // replaced), as with any lost link.
                    self.drop_link = true;
                    return self.link_down(now);
                }
                self.link = LinkPhase::Up;
                if w.unix_time_ms > 0 {
                    // Wrapping: a gateway clock past i64 (fuzzing) must not panic.
                    self.unix_offset = Some((w.unix_time_ms as i64).wrapping_sub(now as i64));
                }
                if self.target.is_some() {
                    self.send_connect(now);
                }
            }
            Msg::State(s) => self.on_state(now, s),
            Msg::Joined(j) => {
                self.identity = j.identity.clone();
                self.events.push_back(Event::Joined {
                    room: j.room,
                    identity: j.identity,
                    participants: j.participants,
                });
            }
            Msg::ParticipantLeft(p) => self.on_participant_left(p.identity),
            Msg::Packet(p) => self.on_packet(now, p),
            Msg::Ping(p) => self.send(now, Msg::Pong(lp::Pong { id: p.id })),
            Msg::Refused(_) => {
                // The gateway would not take our Connect: a link-level problem;
                // the retries decide.
                self.drop_link = true;
                self.link_down(now);
            }
            Msg::Pong(_) | Msg::Hello(_) | Msg::Connect(_) | Msg::Close(_) => {}
        }
    }

    fn on_state(&mut self, now: u64, s: lp::State) {
        if self.target.is_none() {
            return;
        }
        let state = u8::try_from(s.state)
            .ok()
            .and_then(ConnectionState::from_u8)
            .unwrap_or(ConnectionState::Failed);
        let reason = u8::try_from(s.failure_reason)
            .ok()
            .and_then(FailureReason::from_u8)
            .unwrap_or(FailureReason::Other);
        match state {
            ConnectionState::Connected => {
                self.joined_once = true;
                self.attempt = 0;
                self.lost_at = None;
                self.set_state(ConnectionState::Connected, FailureReason::None);
                while let Some(frame) = self.queued.pop_front() {
                    self.tx.push_back(frame);
                }
                self.last_sent = now;
            }
            // A new session after a lost link is still our reconnection.
            ConnectionState::Connecting if self.state == ConnectionState::Reconnecting => {}
            ConnectionState::Connecting | ConnectionState::Reconnecting => {
                self.set_state(state, reason)
            }
            ConnectionState::Failed | ConnectionState::Disconnected => {
                // The room ended the session (bad token, removed, room deleted...):
                // no retry brings it back.
                self.target = None;
                self.end_session(ErrorCode::RecipientDisconnected);
                let reason = if reason == FailureReason::None && state == ConnectionState::Failed {
                    FailureReason::Other
                } else {
                    reason
                };
                self.set_state(state, reason);
            }
        }
    }

    fn on_participant_left(&mut self, identity: String) {
        for (call, outcome) in self.rpc_client.on_participant_left(&identity) {
            self.events.push_back(Event::RpcResult { call, outcome });
        }
        for e in self.streams_in.on_participant_left(&identity) {
            self.on_stream_event(e);
        }
        self.events.push_back(Event::ParticipantLeft { identity });
    }

    fn on_packet(&mut self, now: u64, p: lp::Packet) {
        use prost::Message;
        let Ok(packet) = packet::DataPacket::decode(p.data.as_slice()) else {
            return;
        };
        let sender = packet.participant_identity;
        let kind = DataKind::from_packet_kind(p.kind as i32);
        let Some(value) = packet.value else {
            return;
        };
        match value {
            data_packet::Value::User(u) => self.events.push_back(Event::DataReceived {
                sender,
                topic: u.topic,
                payload: u.payload,
                kind,
            }),
            data_packet::Value::RpcRequest(request) => {
                let (out, invocation) = self.rpc_server.on_request(&sender, &request);
                for o in out {
                    let _ = self.send_packet(now, DataKind::Reliable, &o.packet);
                }
                if let Some(invocation) = invocation {
                    self.events.push_back(Event::RpcInvocation(invocation));
                }
            }
            v @ (data_packet::Value::RpcAck(_) | data_packet::Value::RpcResponse(_)) => {
                if let Some((call, outcome)) = self.rpc_client.on_packet(now, &sender, &v) {
                    self.events.push_back(Event::RpcResult { call, outcome });
                }
            }
            data_packet::Value::StreamHeader(h) if !self.topics.contains(&h.topic) => {}
            v @ (data_packet::Value::StreamHeader(_)
            | data_packet::Value::StreamChunk(_)
            | data_packet::Value::StreamTrailer(_)) => {
                if let Some(e) = self.streams_in.on_packet(&sender, v) {
                    self.on_stream_event(e);
                }
            }
            _ => {}
        }
    }

    fn on_stream_event(&mut self, e: stream::Event) {
        let ev = match e {
            stream::Event::Opened {
                sender,
                kind,
                header,
            } => {
                let is_text = kind == stream::Kind::Text;
                self.accepted.insert(header.stream_id.clone(), is_text);
                Event::StreamOpened {
                    sender,
                    header,
                    is_text,
                }
            }
            stream::Event::Chunk { id, index, content } => {
                Event::StreamChunk { id, index, content }
            }
            stream::Event::Closed { id, .. } => {
                self.accepted.remove(&id);
                Event::StreamClosed {
                    id,
                    reason: String::new(),
                }
            }
            stream::Event::Failed { id, error } => {
                self.accepted.remove(&id);
                let reason = match error {
                    StreamError::Aborted { reason } => reason,
                    other => format!("{other}"),
                };
                Event::StreamClosed { id, reason }
            }
            // Over the limit of readers (or a bad header): not ours to report.
            stream::Event::Refused { .. } => return,
        };
        self.events.push_back(ev);
    }

    fn end_session(&mut self, code: ErrorCode) {
        for (call, mut outcome) in self.rpc_client.close() {
            if let Err(e) = &mut outcome {
                *e = RpcError::new(code);
            }
            self.events.push_back(Event::RpcResult { call, outcome });
        }
        self.rpc_server.close();
        for e in self.streams_in.close() {
            self.on_stream_event(e);
        }
        self.streams_out = stream::Sender::new(self.config.max_stream_writers);
        self.queued.clear();
        self.accepted.clear();
    }

    fn set_state(&mut self, state: ConnectionState, reason: FailureReason) {
        if self.state == state && self.reason == reason {
            return;
        }
        self.state = state;
        self.reason = reason;
        self.events.push_back(Event::StateChanged { state, reason });
    }

    fn send_connect(&mut self, now: u64) {
        if let Some((url, token)) = self.target.clone() {
            self.send(now, Msg::Connect(lp::Connect { url, token }));
        }
    }

    /// Sends a data packet now, or keeps it for when the room is back.
    fn send_packet(
        &mut self,
        now: u64,
        kind: DataKind,
        p: &packet::DataPacket,
    ) -> Result<(), DeviceError> {
        use prost::Message;
        let frame = link::frame(Msg::Packet(lp::Packet {
            kind: kind.packet_kind() as u32,
            data: p.encode_to_vec(),
        }))
        .ok_or(DeviceError::TooLarge)?;
        if self.link == LinkPhase::Up && self.state == ConnectionState::Connected {
            self.tx.push_back(frame);
            self.last_sent = now;
            return Ok(());
        }
        if kind == DataKind::Lossy {
            return Ok(()); // lossy data is not kept for later
        }
        if self.queued.len() >= self.config.max_queued_packets {
            return Err(DeviceError::QueueFull);
        }
        self.queued.push_back(frame);
        Ok(())
    }

    fn send(&mut self, now: u64, m: Msg) {
        if let Some(frame) = link::frame(m) {
            self.tx.push_back(frame);
            self.last_sent = now;
        }
    }

    fn unix_ms(&self, now: u64) -> i64 {
        self.unix_offset.map_or(0, |o| o.wrapping_add(now as i64))
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: ids only need to be unique, not secret.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A random (version 4) UUID, as the official SDKs name requests and streams.
    fn uuid(&mut self) -> String {
        let hi = self.next_random();
        let lo = self.next_random();
        let hi = (hi & 0xFFFF_FFFF_FFFF_0FFF) | 0x0000_0000_0000_4000;
        let lo = (lo & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xFFFF,
            hi & 0xFFFF,
            lo >> 48,
            lo & 0xFFFF_FFFF_FFFF
        )
    }
}

#[cfg(test)]
mod tests;
