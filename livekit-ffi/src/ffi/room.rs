//! Room requests over the FFI and the room's event stream.
//!
//! A connected room is three kinds of handles: the room, its participants (local and
//! remote) and received data buffers. One forwarder task per room turns the engine's
//! `RoomEvent`s into `FfiEvent::RoomEvent`s in order, ending with `eos`.

use std::collections::HashMap;

use tokio::sync::mpsc;

use super::convert::{self, failure_reason, options, owned_participant, room_info};
use super::data_stream::Incoming;
use super::proto;
use super::{FfiError, FfiResult, FfiServer};
use crate::data::{DataKind, UserData, MAX_MESSAGE_SIZE};
use crate::engine::Room;
use crate::room::RoomEvent;

use proto::ffi_event::Message as Ev;
use proto::room_event::Message as RoomEv;

/// The room handle. Dropping it leaves the room.
pub(crate) struct FfiRoom {
    room: Room,
    /// Released by `ReadyForRoomEvent`; the forwarder waits on it before the first event.
    ready: std::sync::Arc<tokio::sync::Notify>,
}

/// How long events wait for a client that never says it is ready.
const READY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Drop for FfiRoom {
    fn drop(&mut self) {
        let room = self.room.clone();
        FfiServer::global().spawn(async move { room.disconnect().await });
    }
}

/// The room behind a handle, if it is a room handle.
pub(super) fn room_of(handle: &(dyn std::any::Any + Send + Sync)) -> Option<Room> {
    handle.downcast_ref::<FfiRoom>().map(|r| r.room.clone())
}

/// A participant handle; the local one can act on the room.
pub(crate) struct FfiParticipant {
    pub(super) room: Room,
    /// The room's handle, named by the events a request of this participant causes.
    pub(super) room_handle: u64,
    pub(super) identity: String,
    pub(super) local: bool,
}

/// Received bytes, alive until the client drops the handle.
pub(crate) struct FfiBuffer {
    pub(super) data: Vec<u8>,
}

pub(super) fn connect(
    server: &'static FfiServer,
    r: proto::ConnectRequest,
) -> FfiResult<proto::ConnectResponse> {
    let async_id = server.async_id(r.request_async_id);
    let opts = options(&r.options)?;
    let work = async move {
        let result = Room::connect(&r.url, &r.token, opts).await;
        // Nothing below awaits: once finished, the callback is certain.
        if !server.finish(async_id) {
            return;
        }
        let callback = match result {
            Ok((room, events)) => {
                let info = room.info();
                let ready = std::sync::Arc::new(tokio::sync::Notify::new());
                let handle = server.insert_handle(FfiRoom {
                    room: room.clone(),
                    ready: ready.clone(),
                });
                let local =
                    owned_participant(server, &room.local_participant(), &room, handle, true);
                let participants = room
                    .joined_participants()
                    .iter()
                    .map(|p| proto::connect_callback::ParticipantWithTracks {
                        participant: owned_participant(server, p, &room, handle, false),
                        publications: p
                            .tracks
                            .iter()
                            .map(|t| super::track::owned_publication(server, &room, t, true))
                            .collect(),
                    })
                    .collect();
                let forwarder = Forwarder {
                    server,
                    handle,
                    local: local.handle.id,
                    room: room.clone(),
                    streams: Incoming::default(),
                };
                server.spawn(forwarder.run(ready, events));
                proto::ConnectCallback {
                    async_id,
                    message: Some(proto::connect_callback::Message::Result(
                        proto::connect_callback::Result {
                            room: proto::OwnedRoom {
                                handle: proto::FfiOwnedHandle { id: handle },
                                info: room_info(&info),
                            },
                            local_participant: local,
                            participants,
                        },
                    )),
                    failure_reason: None,
                }
            }
            Err(e) => proto::ConnectCallback {
                async_id,
                message: Some(proto::connect_callback::Message::Error(e.to_string())),
                failure_reason: Some(failure_reason(e.failure_reason()) as i32),
            },
        };
        server.send_event(Ev::Connect(callback));
    };
    server.spawn_async(async_id, work, move |message| {
        FfiServer::global().send_event(Ev::Connect(proto::ConnectCallback {
            async_id,
            message: Some(proto::connect_callback::Message::Error(format!(
                "connect panicked: {message}"
            ))),
            failure_reason: Some(proto::FailureReason::FailureOther as i32),
        }))
    });
    Ok(proto::ConnectResponse { async_id })
}

/// Turns one room's engine events into FFI events, in order, ending with `eos`.
struct Forwarder {
    server: &'static FfiServer,
    handle: u64,
    /// The local participant's handle, named by RPC invocations.
    local: u64,
    room: Room,
    streams: Incoming,
}

impl Forwarder {
    async fn run(
        mut self,
        ready: std::sync::Arc<tokio::sync::Notify>,
        mut events: mpsc::Receiver<RoomEvent>,
    ) {
        let _ = tokio::time::timeout(READY_WAIT, ready.notified()).await;
        while let Some(ev) = events.recv().await {
            self.forward(ev);
        }
        self.send(RoomEv::Eos(proto::RoomEos {}));
    }

    fn send(&self, m: RoomEv) {
        self.server.send_event(Ev::RoomEvent(proto::RoomEvent {
            room_handle: self.handle,
            message: Some(m),
        }))
    }

    fn forward(&mut self, ev: RoomEvent) {
        let server = self.server;
        match ev {
            RoomEvent::RpcInvocation(i) => {
                return server.send_event(super::rpc::invocation(self.local, i));
            }
            RoomEvent::StreamOpened {
                sender,
                kind,
                header,
            } => {
                let m = self
                    .streams
                    .opened(server, &self.room, sender, kind, header);
                return self.send(m);
            }
            RoomEvent::StreamChunk { id, content } => {
                return self.streams.chunk(server, &id, content);
            }
            RoomEvent::StreamClosed { id, attributes } => {
                return self.streams.end(server, &id, Ok(attributes));
            }
            RoomEvent::StreamFailed { id, error } => {
                return self.streams.end(server, &id, Err(error.to_string()));
            }
            _ => {}
        }
        // Lossy data may be dropped when the client is far behind; the buffer handle
        // it would have handed over is then released here.
        let Some((m, lossy_buffer)) = convert::room_event(server, &self.room, self.handle, ev)
        else {
            return;
        };
        match lossy_buffer {
            Some(id) => {
                let event = Ev::RoomEvent(proto::RoomEvent {
                    room_handle: self.handle,
                    message: Some(m),
                });
                if !server.push_event(event, super::delivery::Class::Droppable) {
                    server.drop_handle(id);
                }
            }
            None => self.send(m),
        }
    }
}

pub(super) fn ready_for_room_event(
    server: &'static FfiServer,
    r: proto::ReadyForRoomEventRequest,
) -> FfiResult<proto::ReadyForRoomEventResponse> {
    server.with_handle::<FfiRoom, _>(r.room_handle, |h| h.ready.notify_one())?;
    Ok(proto::ReadyForRoomEventResponse {})
}

pub(super) fn local_room(server: &FfiServer, handle: u64) -> FfiResult<Room> {
    local_room_handle(server, handle).map(|(room, _)| room)
}

/// The room of the local participant `handle`, with the room's own handle.
pub(super) fn local_room_handle(server: &FfiServer, handle: u64) -> FfiResult<(Room, u64)> {
    server
        .with_handle::<FfiParticipant, _>(handle, |p| {
            p.local.then(|| (p.room.clone(), p.room_handle))
        })?
        .ok_or_else(|| FfiError::Invalid(format!("handle {handle} is not the local participant")))
}

pub(super) fn disconnect(
    server: &'static FfiServer,
    r: proto::DisconnectRequest,
) -> FfiResult<proto::DisconnectResponse> {
    let room = server.with_handle::<FfiRoom, _>(r.room_handle, |h| h.room.clone())?;
    let async_id = server.async_id(r.request_async_id);
    // The two protocols number their disconnect reasons alike.
    let reason = r
        .reason
        .and_then(|n| crate::proto::DisconnectReason::try_from(n).ok())
        .unwrap_or(crate::proto::DisconnectReason::ClientInitiated);
    server.spawn_async(
        async_id,
        async move {
            room.disconnect_with(reason).await;
            if server.finish(async_id) {
                server.send_event(Ev::Disconnect(proto::DisconnectCallback { async_id }));
            }
        },
        move |_| {
            FfiServer::global().send_event(Ev::Disconnect(proto::DisconnectCallback { async_id }))
        },
    );
    Ok(proto::DisconnectResponse { async_id })
}

pub(super) fn publish_data(
    server: &'static FfiServer,
    r: proto::PublishDataRequest,
) -> FfiResult<proto::PublishDataResponse> {
    let room = local_room(server, r.local_participant_handle)?;
    let len = usize::try_from(r.data_len).map_err(|_| FfiError::Invalid("data_len".into()))?;
    let async_id = server.async_id(r.request_async_id);
    // Refuse what can never be sent before touching the caller's memory.
    let payload = if len > MAX_MESSAGE_SIZE {
        Err(format!(
            "data packet of {len} bytes is over the limit of {MAX_MESSAGE_SIZE} bytes"
        ))
    } else {
        // SAFETY: see `client_bytes`; we copy them here.
        Ok(unsafe { super::client_bytes(r.data_ptr, len)? }.to_vec())
    };
    let kind = if r.reliable {
        DataKind::Reliable
    } else {
        DataKind::Lossy
    };
    let mut destinations = r.destination_identities;
    for sid in r.destination_sids {
        if let Some(p) = room
            .remote_participants()
            .into_iter()
            .find(|p| p.sid == sid)
        {
            destinations.push(p.identity);
        }
    }
    let topic = r.topic;
    let payload = match payload {
        Ok(p) => p,
        Err(message) => {
            // Answered like any other failure: through the callback.
            server.send_event(Ev::PublishData(proto::PublishDataCallback {
                async_id,
                error: Some(message),
            }));
            return Ok(proto::PublishDataResponse { async_id });
        }
    };
    // Queued here, in the order requests arrive, with no task per packet: the
    // publisher's task completes it once SCTP has taken it.
    server.register(async_id);
    let done = Box::new(move |result: crate::Result<()>| {
        if server.finish(async_id) {
            server.send_event(Ev::PublishData(proto::PublishDataCallback {
                async_id,
                error: result.err().map(|e| e.to_string()),
            }));
        }
    });
    let data = UserData {
        payload,
        topic,
        destination_identities: destinations,
    };
    if let Err(e) = room.send_data(data, kind, done) {
        if server.finish(async_id) {
            server.send_event(Ev::PublishData(proto::PublishDataCallback {
                async_id,
                error: Some(e.to_string()),
            }));
        }
    }
    Ok(proto::PublishDataResponse { async_id })
}

/// The three "set local ..." requests: one metadata update, then a callback.
fn update_local(
    server: &'static FfiServer,
    handle: u64,
    requested: Option<u64>,
    metadata: Option<String>,
    name: Option<String>,
    attributes: Option<HashMap<String, String>>,
    callback: fn(u64, Option<String>) -> Ev,
) -> FfiResult<u64> {
    let room = local_room(server, handle)?;
    let async_id = server.async_id(requested);
    server.spawn_async(
        async_id,
        async move {
            let result = room
                .update_local_participant(metadata, name, attributes)
                .await;
            if server.finish(async_id) {
                server.send_event(callback(async_id, result.err().map(|e| e.to_string())));
            }
        },
        move |m| FfiServer::global().send_event(callback(async_id, Some(m))),
    );
    Ok(async_id)
}

pub(super) fn set_local_metadata(
    server: &'static FfiServer,
    r: proto::SetLocalMetadataRequest,
) -> FfiResult<proto::SetLocalMetadataResponse> {
    let async_id = update_local(
        server,
        r.local_participant_handle,
        r.request_async_id,
        Some(r.metadata),
        None,
        None,
        |async_id, error| Ev::SetLocalMetadata(proto::SetLocalMetadataCallback { async_id, error }),
    )?;
    Ok(proto::SetLocalMetadataResponse { async_id })
}

pub(super) fn set_local_name(
    server: &'static FfiServer,
    r: proto::SetLocalNameRequest,
) -> FfiResult<proto::SetLocalNameResponse> {
    let async_id = update_local(
        server,
        r.local_participant_handle,
        r.request_async_id,
        None,
        Some(r.name),
        None,
        |async_id, error| Ev::SetLocalName(proto::SetLocalNameCallback { async_id, error }),
    )?;
    Ok(proto::SetLocalNameResponse { async_id })
}

pub(super) fn set_local_attributes(
    server: &'static FfiServer,
    r: proto::SetLocalAttributesRequest,
) -> FfiResult<proto::SetLocalAttributesResponse> {
    let attributes = r.attributes.into_iter().map(|e| (e.key, e.value)).collect();
    let async_id = update_local(
        server,
        r.local_participant_handle,
        r.request_async_id,
        None,
        None,
        Some(attributes),
        |async_id, error| {
            Ev::SetLocalAttributes(proto::SetLocalAttributesCallback { async_id, error })
        },
    )?;
    Ok(proto::SetLocalAttributesResponse { async_id })
}

/// Queues a non-user data packet (DTMF, transcription) in call order, then a
/// callback once the data channel took it.
fn send_packet(
    server: &'static FfiServer,
    handle: u64,
    requested: Option<u64>,
    value: livekit_core::packet::data_packet::Value,
    destinations: Vec<String>,
    callback: fn(u64, Option<String>) -> Ev,
) -> FfiResult<u64> {
    let room = local_room(server, handle)?;
    let async_id = server.async_id(requested);
    server.register(async_id);
    let done = Box::new(move |result: crate::Result<()>| {
        if server.finish(async_id) {
            server.send_event(callback(async_id, result.err().map(|e| e.to_string())));
        }
    });
    if let Err(e) = room.send_packet(value, destinations, done) {
        if server.finish(async_id) {
            server.send_event(callback(async_id, Some(e.to_string())));
        }
    }
    Ok(async_id)
}

pub(super) fn publish_sip_dtmf(
    server: &'static FfiServer,
    r: proto::PublishSipDtmfRequest,
) -> FfiResult<proto::PublishSipDtmfResponse> {
    let value = livekit_core::packet::data_packet::Value::SipDtmf(livekit_core::packet::SipDtmf {
        code: r.code,
        digit: r.digit,
    });
    let async_id = send_packet(
        server,
        r.local_participant_handle,
        r.request_async_id,
        value,
        r.destination_identities,
        |async_id, error| Ev::PublishSipDtmf(proto::PublishSipDtmfCallback { async_id, error }),
    )?;
    Ok(proto::PublishSipDtmfResponse { async_id })
}

pub(super) fn publish_transcription(
    server: &'static FfiServer,
    r: proto::PublishTranscriptionRequest,
) -> FfiResult<proto::PublishTranscriptionResponse> {
    let value = livekit_core::packet::data_packet::Value::Transcription(convert::transcription(&r));
    let async_id = send_packet(
        server,
        r.local_participant_handle,
        r.request_async_id,
        value,
        vec![],
        |async_id, error| {
            Ev::PublishTranscription(proto::PublishTranscriptionCallback { async_id, error })
        },
    )?;
    Ok(proto::PublishTranscriptionResponse { async_id })
}

pub(super) fn set_track_subscription_permissions(
    server: &'static FfiServer,
    r: proto::SetTrackSubscriptionPermissionsRequest,
) -> FfiResult<proto::SetTrackSubscriptionPermissionsResponse> {
    let room = local_room(server, r.local_participant_handle)?;
    let permissions = r
        .permissions
        .into_iter()
        .map(|p| {
            (
                p.participant_identity,
                p.allow_all.unwrap_or(false),
                p.allowed_track_sids,
            )
        })
        .collect();
    let all = r.all_participants_allowed;
    // Answered at once, as livekit-ffi does; the update follows in order.
    server.spawn(async move {
        if let Err(e) = room
            .set_track_subscription_permissions(all, permissions)
            .await
        {
            log::warn!("track subscription permissions not sent: {e}");
        }
    });
    Ok(proto::SetTrackSubscriptionPermissionsResponse {})
}

pub(super) fn get_session_stats(
    server: &'static FfiServer,
    r: proto::GetSessionStatsRequest,
) -> FfiResult<proto::GetSessionStatsResponse> {
    let room = server.with_handle::<FfiRoom, _>(r.room_handle, |h| h.room.clone())?;
    let async_id = server.async_id(r.request_async_id);
    let failed = move |error: String| {
        Ev::GetSessionStats(proto::GetSessionStatsCallback {
            async_id,
            message: Some(proto::get_session_stats_callback::Message::Error(error)),
        })
    };
    server.spawn_async(
        async_id,
        async move {
            let event = match room.stats().await {
                Ok(stats) => Ev::GetSessionStats(proto::GetSessionStatsCallback {
                    async_id,
                    message: Some(proto::get_session_stats_callback::Message::Result(
                        proto::get_session_stats_callback::Result {
                            publisher_stats: convert::peer_stats("PUB", stats.publisher),
                            subscriber_stats: convert::peer_stats("SUB", stats.subscriber),
                        },
                    )),
                }),
                Err(e) => failed(e.to_string()),
            };
            if server.finish(async_id) {
                server.send_event(event);
            }
        },
        move |m| FfiServer::global().send_event(failed(m)),
    );
    Ok(proto::GetSessionStatsResponse { async_id })
}
