//! The engine: joins a room and keeps it joined.
//!
//! [`machine::Engine`] makes every decision (join progress, negotiation per
//! transport in [`transport`], request correlation in [`requests`], lost transports
//! in [`watch`], resume or rejoin) without I/O;
//! [`driver`] is the one task per room that owns the sockets (signal client, peer
//! connections), feeds the machine and carries out its actions. [`Room`] is the
//! user's handle: it reads the shared room state, queues data in the room's
//! [`Outbox`] and sends commands to the driver. Dropping every clone of it leaves.

mod driver;
mod io;
mod machine;
mod media;
mod requests;
#[cfg(test)]
mod tests;
mod transport;
mod watch;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use livekit_core::packet;
use livekit_protocol as proto;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use crate::data::{DataKind, UserData};
use crate::error::{Error, Result};
use crate::ice::IceConfig;
use crate::outbox::{Done, Outbox};
use crate::room::{Participant, RoomEvent, RoomInfo, RoomState};
use crate::rpc::{PerformRpc, Rpc, RpcError};
use crate::signal::{parse_server_url, JoinOptions};
use crate::state::{ConnectionState, FailureReason, RetryPolicy};
use crate::stats::PeerStats;
use crate::stream::{StreamHeader, StreamOptions, StreamWriter, Streams};
use requests::RequestError;

use crate::audio::{LocalAudioTrack, MediaInput};
pub use media::PublishError;
#[cfg(feature = "fuzzing")]
pub(crate) use {io::Action, io::Input, machine::Engine};

/// How long ICE, DTLS and the data channels may take on a join (seed RTCEngine).
pub const ICE_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound of the user's event queue; a slow consumer slows the room's driver.
pub const EVENT_QUEUE: usize = 4096;

#[derive(Debug, Clone)]
pub struct RoomOptions {
    pub join: JoinOptions,
    pub retry: RetryPolicy,
    pub ice_timeout: Duration,
    /// Data streams we may send at once; opening one more is refused.
    pub max_stream_writers: usize,
    /// Data streams we receive at once; more are refused (and logged).
    pub max_stream_readers: usize,
    /// RPC and data-stream packets are not handled here but handed over as they are
    /// ([`RoomEvent::DataPacket`]): for a gateway whose device runs that logic itself.
    pub relay_data: bool,
    /// The user's ICE servers and policies (`RtcConfiguration`); the server's join
    /// adds its own servers when these are empty.
    pub ice: IceConfig,
}

impl Default for RoomOptions {
    fn default() -> Self {
        Self {
            join: JoinOptions::default(),
            retry: RetryPolicy::default(),
            ice_timeout: ICE_CONNECT_TIMEOUT,
            max_stream_writers: crate::stream::DEFAULT_MAX_STREAMS,
            max_stream_readers: crate::stream::DEFAULT_MAX_STREAMS,
            relay_data: false,
            ice: IceConfig::default(),
        }
    }
}

/// Milliseconds since the Unix epoch, as chat messages and streams carry them.
pub(crate) fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What the `Room` handle, the driver and the machine share.
pub(crate) struct Shared {
    pub(crate) state: Mutex<RoomState>,
    pub(crate) conn: Mutex<(ConnectionState, FailureReason)>,
    pub(crate) token: Mutex<String>,
    /// Data waiting for (and kept after) the publisher's data channels.
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) rpc: Rpc,
    pub(crate) streams: Streams,
    /// Where our tracks' encoded audio goes: the current publisher connection.
    pub(crate) media_input: MediaInput,
    /// The other participants as the join found them (before any event).
    pub(crate) joined: Mutex<Vec<Participant>>,
    /// See [`RoomOptions::relay_data`].
    relay_data: bool,
}

impl Shared {
    pub(crate) fn new(token: &str, options: &RoomOptions) -> Self {
        Self {
            state: Mutex::new(RoomState::default()),
            conn: Mutex::new((ConnectionState::Connecting, FailureReason::None)),
            token: Mutex::new(token.to_owned()),
            outbox: Arc::new(Outbox::default()),
            rpc: Rpc::default(),
            streams: Streams::new(options.max_stream_writers, options.max_stream_readers),
            media_input: MediaInput::default(),
            joined: Mutex::new(Vec::new()),
            relay_data: options.relay_data,
        }
    }

    fn identity(&self) -> String {
        self.state.lock().local.identity.clone()
    }

    /// Takes in a received packet that is not user data: RPC and stream packets
    /// are handled here (the events they make are returned), the rest becomes a
    /// `DataPacket` event.
    pub(crate) fn route(&self, mut p: Box<packet::DataPacket>) -> Vec<RoomEvent> {
        use packet::data_packet::Value as V;
        if self.relay_data {
            return vec![RoomEvent::DataPacket(p)];
        }
        let sender = &p.participant_identity;
        match p.value.take() {
            None => vec![],
            Some(v @ (V::StreamHeader(_) | V::StreamChunk(_) | V::StreamTrailer(_))) => {
                self.streams.on_packet(sender, v).into_iter().collect()
            }
            Some(v @ (V::RpcRequest(_) | V::RpcAck(_) | V::RpcResponse(_))) => {
                let identity = self.identity();
                self.rpc
                    .on_packet(&self.outbox, &identity, sender, &v)
                    .map(RoomEvent::RpcInvocation)
                    .into_iter()
                    .collect()
            }
            Some(V::ChatMessage(message)) => vec![RoomEvent::ChatMessage {
                sender: sender.clone(),
                message,
            }],
            Some(other) => {
                p.value = Some(other);
                vec![RoomEvent::DataPacket(p)]
            }
        }
    }

    /// `identity` left the room: its calls and streams end.
    pub(crate) fn participant_left(&self, identity: &str) -> Vec<RoomEvent> {
        self.rpc.participant_left(identity);
        self.streams.participant_left(identity)
    }

    /// We left the room: calls end, unfinished streams fail.
    pub(crate) fn closed(&self) -> Vec<RoomEvent> {
        self.rpc.close();
        self.streams.shutdown()
    }
}

/// How a track is published (the official `TrackPublishOptions` that apply to audio).
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// `TrackSource` (microphone by default).
    pub source: proto::TrackSource,
    /// Opus discontinuous transmission: almost nothing is sent during silence.
    pub dtx: bool,
    /// Redundant audio (RED). We send plain Opus; the server is told so.
    pub red: bool,
    /// The stream this track belongs to (tracks of one stream are synchronised).
    pub stream: String,
}

impl Default for PublishOptions {
    fn default() -> Self {
        Self {
            source: proto::TrackSource::Microphone,
            dtx: true,
            red: true,
            stream: String::new(),
        }
    }
}

enum Command {
    Disconnect(oneshot::Sender<()>, proto::DisconnectReason),
    Publish {
        track: LocalAudioTrack,
        request: proto::AddTrackRequest,
        dtx: bool,
        reply: oneshot::Sender<std::result::Result<proto::TrackInfo, PublishError>>,
    },
    Unpublish(String, oneshot::Sender<bool>),
    Mute(String, bool, oneshot::Sender<bool>),
    /// What both peer connections measured (publisher, subscriber).
    Stats(oneshot::Sender<SessionStats>),
    /// A request the server answers with nothing (sent as is, when connected).
    Signal(Box<proto::signal_request::Message>),
    Update(
        proto::UpdateParticipantMetadata,
        oneshot::Sender<std::result::Result<(), RequestError>>,
    ),
}

/// What a room's peer connections measured; a connection not up has none.
#[derive(Debug, Clone, Default)]
pub struct SessionStats {
    pub publisher: Option<PeerStats>,
    pub subscriber: Option<PeerStats>,
}

/// A joined room. Cheap to clone; the room is left when the last clone is dropped
/// or `disconnect` is called.
#[derive(Clone)]
pub struct Room {
    shared: Arc<Shared>,
    cmd: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Room {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Room").field("room", &self.info()).finish()
    }
}

impl Room {
    /// Joins the room at `url` with `token`. Cancelling this future at any point
    /// leaves nothing behind: the room's driver sees its caller gone and leaves.
    pub async fn connect(
        url: &str,
        token: &str,
        options: RoomOptions,
    ) -> Result<(Room, mpsc::Receiver<RoomEvent>)> {
        let base = parse_server_url(url)?;
        let shared = Arc::new(Shared::new(token, &options));
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (join_tx, join_rx) = oneshot::channel();
        let engine = machine::Engine::new(options.clone(), shared.clone());
        let driver = driver::Driver::new(
            engine,
            base,
            options,
            shared.clone(),
            events_tx,
            cmd_rx,
            join_tx,
        );
        tokio::spawn(driver.run());
        join_rx.await.map_err(|_| Error::Closed)??;
        Ok((
            Room {
                shared,
                cmd: cmd_tx,
            },
            events_rx,
        ))
    }

    pub fn info(&self) -> RoomInfo {
        self.shared.state.lock().room.clone()
    }

    pub fn local_participant(&self) -> Participant {
        self.shared.state.lock().local.clone()
    }

    pub fn remote_participants(&self) -> Vec<Participant> {
        self.shared.state.lock().remotes.values().cloned().collect()
    }

    /// The other participants as the join found them: with the room's events,
    /// which start right after the join, they make up the room with nothing seen
    /// twice (a client building its view from `remote_participants` at some later
    /// moment may see a change both there and in a queued event).
    pub fn joined_participants(&self) -> Vec<Participant> {
        self.shared.joined.lock().clone()
    }

    pub fn remote_participant(&self, identity: &str) -> Option<Participant> {
        self.shared.state.lock().remotes.get(identity).cloned()
    }

    pub fn active_speakers(&self) -> Vec<String> {
        self.shared.state.lock().active_speakers()
    }

    pub fn connection_state(&self) -> ConnectionState {
        self.shared.conn.lock().0
    }

    pub fn failure_reason(&self) -> FailureReason {
        self.shared.conn.lock().1
    }

    /// The current token (the server refreshes it while connected).
    pub fn token(&self) -> String {
        self.shared.token.lock().clone()
    }

    /// Publishes an audio track; resolves with the server's description of it once
    /// the server accepted it (its media follows as soon as negotiated).
    pub async fn publish_audio(
        &self,
        track: &LocalAudioTrack,
        options: PublishOptions,
    ) -> std::result::Result<proto::TrackInfo, PublishError> {
        let mut audio_features = vec![];
        if track.stereo() {
            audio_features.push(proto::AudioTrackFeature::TfStereo as i32);
        }
        if !options.dtx {
            audio_features.push(proto::AudioTrackFeature::TfNoDtx as i32);
        }
        // The deprecated fields are what servers before the feature list read.
        #[allow(deprecated)]
        let request = proto::AddTrackRequest {
            cid: track.cid().to_owned(),
            name: track.name().to_owned(),
            r#type: proto::TrackType::Audio as i32,
            muted: track.is_muted(),
            disable_dtx: !options.dtx,
            source: options.source as i32,
            stereo: track.stereo(),
            // We send plain Opus whatever was asked.
            disable_red: true,
            stream: options.stream,
            audio_features,
            ..Default::default()
        };
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Command::Publish {
                track: track.clone(),
                request,
                dtx: options.dtx,
                reply,
            })
            .await
            .map_err(|_| PublishError::Closed)?;
        rx.await.map_err(|_| PublishError::Closed)?
    }

    /// Stops publishing our track `sid`; `false` when it is not published.
    pub async fn unpublish_track(&self, sid: &str) -> Result<bool> {
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Command::Unpublish(sid.to_owned(), reply))
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// Mutes or unmutes our track `sid` (a muted track sends nothing); `false` when
    /// it is not published.
    pub async fn set_track_muted(&self, sid: &str, muted: bool) -> Result<bool> {
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Command::Mute(sid.to_owned(), muted, reply))
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// The statistics of both peer connections (for `get_rtc_stats`).
    pub async fn stats(&self) -> Result<SessionStats> {
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Command::Stats(reply))
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// Subscribes to (or unsubscribes from) a remote track; the change shows as
    /// `TrackSubscribed` / `TrackUnsubscribed` once the media follows.
    pub async fn set_subscribed(&self, sid: &str, subscribed: bool) -> Result<()> {
        let participant_sid = {
            let state = self.shared.state.lock();
            let (p, _) = state
                .track(sid)
                .ok_or_else(|| Error::Refused(format!("no remote track {sid}")))?;
            p.sid.clone()
        };
        let update = proto::UpdateSubscription {
            track_sids: vec![sid.to_owned()],
            subscribe: subscribed,
            participant_tracks: vec![proto::ParticipantTracks {
                participant_sid,
                track_sids: vec![sid.to_owned()],
            }],
        };
        self.cmd
            .send(Command::Signal(Box::new(
                proto::signal_request::Message::Subscription(update),
            )))
            .await
            .map_err(|_| Error::Closed)
    }

    /// The audio track of `identity` from `source` we receive, if any.
    pub fn subscribed_audio(
        &self,
        identity: &str,
        source: proto::TrackSource,
    ) -> Option<crate::audio::RemoteAudioTrack> {
        let state = self.shared.state.lock();
        let p = state.remotes.get(identity)?;
        p.tracks
            .iter()
            .filter(|t| t.r#type == proto::TrackType::Audio as i32)
            .filter(|t| source == proto::TrackSource::Unknown || t.source == source as i32)
            .find_map(|t| state.subscribed.get(&t.sid).cloned())
    }

    /// Our published tracks, as the server describes them.
    pub fn local_tracks(&self) -> Vec<proto::TrackInfo> {
        self.shared.state.lock().local_tracks.clone()
    }

    /// Sends a user packet; resolves once the data channel has taken it. Callers
    /// wait in call order while the queue is full. Oversized packets are refused
    /// before anything is sent.
    pub async fn publish_data(&self, data: UserData, kind: DataKind) -> Result<()> {
        let identity = self.shared.state.lock().local.identity.clone();
        self.shared
            .outbox
            .send_when_room(&identity, data, kind)
            .await
    }

    /// Queues a user packet now, in call order; `done` runs once the data channel has
    /// taken it. For callers that already hold the bytes (the FFI) and bound their
    /// own backlog.
    pub fn send_data(&self, data: UserData, kind: DataKind, done: Done) -> Result<()> {
        let identity = self.shared.state.lock().local.identity.clone();
        self.shared.outbox.send(&identity, data, kind, done)
    }

    /// Queues a data packet of another kind than user data (SIP DTMF, transcription)
    /// now, in call order, on the reliable channel; `done` runs once it was taken.
    pub fn send_packet(
        &self,
        value: packet::data_packet::Value,
        destinations: Vec<String>,
        done: Done,
    ) -> Result<()> {
        self.send_packet_as(value, destinations, DataKind::Reliable, done)
    }

    /// [`Room::send_packet`] on the channel of `kind` (a relay passes on what its
    /// device chose).
    pub fn send_packet_as(
        &self,
        value: packet::data_packet::Value,
        destinations: Vec<String>,
        kind: DataKind,
        done: Done,
    ) -> Result<()> {
        let identity = self.shared.state.lock().local.identity.clone();
        let packet = crate::outbox::Packet {
            identity: &identity,
            destinations,
            value,
        };
        self.shared.outbox.send_packet(packet, kind, done)
    }

    /// Calls `method` of another participant; resolves with its answer or an
    /// [`RpcError`] (the official codes: timeouts, unknown method, payload limits,
    /// the recipient leaving...). Dropping the future forgets the call.
    pub async fn perform_rpc(&self, call: PerformRpc) -> std::result::Result<String, RpcError> {
        let identity = self.shared.identity();
        self.shared
            .rpc
            .perform(&self.shared.outbox, &identity, call)
            .await
    }

    /// Accepts calls of `method`: they arrive as [`RoomEvent::RpcInvocation`].
    /// Calls of methods not registered are refused for us (`UNSUPPORTED_METHOD`).
    pub fn register_rpc_method(&self, method: &str) {
        self.shared.rpc.register(method);
    }

    pub fn unregister_rpc_method(&self, method: &str) {
        self.shared.rpc.unregister(method);
    }

    /// Answers invocation `id`; `false` when it is not pending (already answered,
    /// or the room was left meanwhile).
    pub fn respond_rpc(&self, id: u64, answer: std::result::Result<String, RpcError>) -> bool {
        let identity = self.shared.identity();
        self.shared
            .rpc
            .respond(&self.shared.outbox, &identity, id, answer)
    }

    /// Sends a chat message; resolves with it (its id and timestamp) once sent.
    pub async fn send_chat_message(
        &self,
        message: &str,
        destinations: Vec<String>,
    ) -> Result<packet::ChatMessage> {
        let chat = packet::ChatMessage {
            id: crate::rpc::random_id(),
            timestamp: unix_millis(),
            message: message.to_owned(),
            ..Default::default()
        };
        self.send_chat(chat.clone(), destinations).await?;
        Ok(chat)
    }

    /// Replaces the text of a message we sent; resolves with the edited message.
    pub async fn edit_chat_message(
        &self,
        text: &str,
        original: packet::ChatMessage,
        destinations: Vec<String>,
    ) -> Result<packet::ChatMessage> {
        let chat = packet::ChatMessage {
            message: text.to_owned(),
            edit_timestamp: Some(unix_millis()),
            ..original
        };
        self.send_chat(chat.clone(), destinations).await?;
        Ok(chat)
    }

    async fn send_chat(&self, chat: packet::ChatMessage, destinations: Vec<String>) -> Result<()> {
        let identity = self.shared.identity();
        let value = packet::data_packet::Value::ChatMessage(chat);
        self.shared
            .outbox
            .send_packets_when_room(&identity, vec![(destinations, value)])
            .await
    }

    /// Opens a data stream; write to the returned writer, then close it.
    pub async fn stream_open(&self, options: StreamOptions) -> Result<StreamWriter> {
        let header = options.header();
        let identity = self.shared.identity();
        self.shared
            .streams
            .open(
                &self.shared.outbox,
                &identity,
                header.clone(),
                options.destination_identities,
            )
            .await?;
        Ok(StreamWriter {
            room: self.clone(),
            header,
            closed: false,
        })
    }

    /// Sends `data` as one whole stream (text when `options.name` is `None`, and
    /// then `data` must be UTF-8); resolves with its header once sent.
    pub async fn stream_send(
        &self,
        data: &[u8],
        mut options: StreamOptions,
    ) -> Result<StreamHeader> {
        options.total_length.get_or_insert(data.len() as u64);
        let writer = self.stream_open(options).await?;
        writer.write(data).await?;
        let header = writer.header.clone();
        writer.close("", HashMap::new()).await?;
        Ok(header)
    }

    pub(crate) async fn stream_write(&self, id: &str, data: &[u8]) -> Result<()> {
        let identity = self.shared.identity();
        self.shared
            .streams
            .write(&self.shared.outbox, &identity, id, data)
            .await
    }

    pub(crate) async fn stream_close(
        &self,
        id: &str,
        reason: &str,
        attributes: std::collections::BTreeMap<String, String>,
    ) -> Result<()> {
        let identity = self.shared.identity();
        self.shared
            .streams
            .close(&self.shared.outbox, &identity, id, reason, attributes)
            .await
    }

    pub(crate) fn stream_drop(&self, id: &str) {
        let identity = self.shared.identity();
        self.shared.streams.close_now(
            &self.shared.outbox,
            &identity,
            id,
            "writer dropped before close",
        );
    }

    /// Hands the streams of `topic` to `handler` (open, each chunk, close) instead
    /// of reporting them as room events.
    pub fn register_stream_handler(
        &self,
        topic: &str,
        handler: std::sync::Arc<dyn crate::stream::StreamHandler>,
    ) {
        self.shared.streams.register(topic, handler);
    }

    pub fn unregister_stream_handler(&self, topic: &str) {
        self.shared.streams.unregister(topic);
    }

    /// Stops receiving stream `id`: what still comes for it is dropped.
    pub fn discard_stream(&self, id: &str) {
        self.shared.streams.discard(id);
    }

    /// Who may subscribe to our tracks: everyone (`all`), or the participants
    /// listed, each to all its tracks or to the track sids given.
    pub async fn set_track_subscription_permissions(
        &self,
        all: bool,
        permissions: Vec<(String, bool, Vec<String>)>,
    ) -> Result<()> {
        let track_permissions = permissions
            .into_iter()
            .map(
                |(identity, all_tracks, track_sids)| proto::TrackPermission {
                    participant_identity: identity,
                    all_tracks,
                    track_sids,
                    ..Default::default()
                },
            )
            .collect();
        let req =
            proto::signal_request::Message::SubscriptionPermission(proto::SubscriptionPermission {
                all_participants: all,
                track_permissions,
            });
        self.cmd
            .send(Command::Signal(Box::new(req)))
            .await
            .map_err(|_| Error::NotConnected)
    }

    /// Asks the server to change our metadata, name or attributes (needs the
    /// `canUpdateOwnMetadata` grant). Resolves when the server has applied it (the
    /// change also arrives as room events) and fails with its reason when refused.
    pub async fn update_local_participant(
        &self,
        metadata: Option<String>,
        name: Option<String>,
        attributes: Option<HashMap<String, String>>,
    ) -> Result<()> {
        let local = self.local_participant();
        let req = proto::UpdateParticipantMetadata {
            metadata: metadata.unwrap_or(local.metadata),
            name: name.unwrap_or(local.name),
            attributes: attributes.unwrap_or_default(),
            request_id: 0,
        };
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Command::Update(req, tx))
            .await
            .map_err(|_| Error::NotConnected)?;
        match rx.await {
            Ok(result) => result.map_err(Error::from),
            Err(_) => Err(Error::Closed),
        }
    }

    /// Leaves the room: sends a leave, closes sockets and ends every task.
    /// Bounded in time; calling it again is harmless.
    pub async fn disconnect(&self) {
        self.disconnect_with(proto::DisconnectReason::ClientInitiated)
            .await
    }

    /// Leaves the room telling the others `reason` (as their `disconnect_reason`).
    pub async fn disconnect_with(&self, reason: proto::DisconnectReason) {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Command::Disconnect(tx, reason)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(3), rx).await;
        }
    }
}
