//! Conversions between the core's types and the FFI protocol's messages, apart
//! from the request handlers that use them.

use std::collections::HashMap;

use super::proto;
use super::room::{FfiBuffer, FfiParticipant};
use super::{FfiError, FfiResult, FfiServer};
use crate::data::DataKind;
use crate::engine::{Room, RoomOptions};
use crate::ice::{IceConfig, IcePolicy, IceServer, ServerUrl, TurnTransport};
use crate::room::{Participant, RoomEvent, RoomInfo};
use crate::state::{ConnectionState, FailureReason};
use crate::stats::{CandidateStats, CandidateType, IceState, PeerStats};

use proto::room_event::Message as RoomEv;

pub(super) fn participant_info(p: &Participant) -> proto::ParticipantInfo {
    let kind = participant_kind(p.kind);
    proto::ParticipantInfo {
        sid: p.sid.clone(),
        name: p.name.clone(),
        identity: p.identity.clone(),
        state: participant_state(p.state) as i32,
        metadata: p.metadata.clone(),
        attributes: p.attributes.clone(),
        kind: kind as i32,
        disconnect_reason: proto::DisconnectReason::UnknownReason as i32,
        joined_at: p.joined_at_ms,
        kind_details: p
            .kind_details
            .iter()
            .filter_map(|k| kind_detail(*k))
            .map(|k| k as i32)
            .collect(),
        permission: p.permission.as_ref().map(permission),
        client_protocol: 0,
    }
}

fn participant_state(state: i32) -> proto::ParticipantState {
    use crate::proto::participant_info::State;
    use proto::ParticipantState as P;
    match State::try_from(state) {
        Ok(State::Joining) => P::Joining,
        Ok(State::Joined) => P::Joined,
        Ok(State::Active) => P::Active,
        Ok(State::Disconnected) => P::Disconnected,
        Err(_) => {
            log::debug!("unknown participant state {state}, reported as active");
            P::Active
        }
    }
}

fn kind_detail(detail: i32) -> Option<proto::ParticipantKindDetail> {
    use crate::proto::participant_info::KindDetail as K;
    use proto::ParticipantKindDetail as P;
    Some(match K::try_from(detail) {
        Ok(K::CloudAgent) => P::CloudAgent,
        Ok(K::Forwarded) => P::Forwarded,
        Ok(K::ConnectorWhatsapp) => P::ConnectorWhatsapp,
        Ok(K::ConnectorTwilio) => P::ConnectorTwilio,
        Ok(K::BridgeRtsp) => P::BridgeRtsp,
        Ok(K::Simulation) => P::Simulation,
        Err(_) => {
            log::debug!("skipping unknown participant kind detail {detail}");
            return None;
        }
    })
}

fn permission(p: &crate::proto::ParticipantPermission) -> proto::ParticipantPermission {
    proto::ParticipantPermission {
        can_subscribe: p.can_subscribe,
        can_publish: p.can_publish,
        can_publish_data: p.can_publish_data,
        can_publish_sources: p
            .can_publish_sources
            .iter()
            .filter_map(|s| track_source(*s))
            .map(|s| s as i32)
            .collect(),
        hidden: p.hidden,
        can_update_metadata: p.can_update_metadata,
        can_subscribe_metrics: p.can_subscribe_metrics,
        can_manage_agent_session: p.can_manage_agent_session,
    }
}

pub(super) fn track_source(source: i32) -> Option<proto::TrackSource> {
    use crate::proto::TrackSource as S;
    use proto::TrackSource as P;
    Some(match S::try_from(source) {
        Ok(S::Unknown) => P::SourceUnknown,
        Ok(S::Camera) => P::SourceCamera,
        Ok(S::Microphone) => P::SourceMicrophone,
        Ok(S::ScreenShare) => P::SourceScreenshare,
        Ok(S::ScreenShareAudio) => P::SourceScreenshareAudio,
        Err(_) => return None,
    })
}

/// The FFI's participant kind for the server's (the two enums number them apart).
fn participant_kind(kind: i32) -> proto::ParticipantKind {
    use crate::proto::participant_info::Kind;
    use proto::ParticipantKind as P;
    match Kind::try_from(kind) {
        Ok(Kind::Standard) => P::Standard,
        Ok(Kind::Ingress) => P::Ingress,
        Ok(Kind::Egress) => P::Egress,
        Ok(Kind::Sip) => P::Sip,
        Ok(Kind::Agent) => P::Agent,
        Ok(Kind::Connector) => P::Connector,
        Ok(Kind::Bridge) => P::Bridge,
        Err(_) => {
            log::debug!("unknown participant kind {kind}, reported as standard");
            P::Standard
        }
    }
}

pub(super) fn owned_participant(
    server: &FfiServer,
    p: &Participant,
    room: &Room,
    room_handle: u64,
    local: bool,
) -> proto::OwnedParticipant {
    let id = server.insert_handle(FfiParticipant {
        room: room.clone(),
        room_handle,
        identity: p.identity.clone(),
        local,
    });
    proto::OwnedParticipant {
        handle: proto::FfiOwnedHandle { id },
        info: participant_info(p),
    }
}

pub(super) fn room_info(info: &RoomInfo) -> proto::RoomInfo {
    proto::RoomInfo {
        sid: (!info.sid.is_empty()).then(|| info.sid.clone()),
        name: info.name.clone(),
        metadata: info.metadata.clone(),
        num_participants: info.num_participants,
        num_publishers: info.num_publishers,
        max_participants: info.max_participants,
        empty_timeout: info.empty_timeout,
        departure_timeout: info.departure_timeout,
        creation_time: info.creation_time_ms,
        active_recording: info.active_recording,
        ..Default::default()
    }
}

pub(super) fn failure_reason(r: FailureReason) -> proto::FailureReason {
    proto::FailureReason::try_from(r as i32).unwrap_or(proto::FailureReason::FailureOther)
}

/// The closest official `DisconnectReason` for one of ours.
fn disconnect_reason(r: FailureReason) -> proto::DisconnectReason {
    use proto::DisconnectReason as D;
    match r {
        FailureReason::None => D::ClientInitiated,
        FailureReason::DuplicateIdentity => D::DuplicateIdentity,
        FailureReason::ServerShutdown => D::ServerShutdown,
        FailureReason::ParticipantRemoved => D::ParticipantRemoved,
        FailureReason::RoomDeleted => D::RoomDeleted,
        FailureReason::StateMismatch => D::StateMismatch,
        FailureReason::JoinIncomplete => D::JoinFailure,
        FailureReason::Migration => D::Migration,
        FailureReason::SignalClose | FailureReason::PingTimeout => D::SignalClose,
        FailureReason::RoomClosed => D::RoomClosed,
        FailureReason::SipUserUnavailable => D::UserUnavailable,
        FailureReason::SipUserRejected => D::UserRejected,
        FailureReason::SipTrunkFailure => D::SipTrunkFailure,
        FailureReason::ConnectionTimeout => D::ConnectionTimeout,
        FailureReason::MediaFailure => D::MediaFailure,
        _ => D::UnknownReason,
    }
}

/// Streams open at once each way for FFI clients.
pub const FFI_MAX_STREAMS: usize = 256;

pub(super) fn options(o: &proto::RoomOptions) -> FfiResult<RoomOptions> {
    // Clients of the FFI expect no bound on concurrent streams (the official SDK
    // has none); the core's bound stays as a guard against floods.
    let mut opts = RoomOptions {
        max_stream_readers: FFI_MAX_STREAMS,
        max_stream_writers: FFI_MAX_STREAMS,
        ..Default::default()
    };
    if let Some(rtc) = &o.rtc_config {
        opts.ice = ice_config(rtc)?;
    }
    if let Some(a) = o.auto_subscribe {
        opts.join.auto_subscribe = a;
    }
    if let Some(a) = o.adaptive_stream {
        opts.join.adaptive_stream = a;
    }
    if let Some(ms) = o.connect_timeout_ms.filter(|ms| *ms > 0) {
        opts.join.connect_timeout = std::time::Duration::from_millis(ms);
    }
    if let Some(n) = o.join_retries {
        opts.retry.max_attempts = n.max(1);
    }
    Ok(opts)
}

/// The user's `RtcConfiguration`: transport policy, gathering policy, ICE servers.
pub(super) fn ice_config(rtc: &proto::RtcConfig) -> FfiResult<IceConfig> {
    use proto::{ContinualGatheringPolicy as Gather, IceTransportType as Transport};
    let policy = match rtc.ice_transport_type.map(Transport::try_from) {
        None | Some(Ok(Transport::TransportAll)) => IcePolicy::All,
        Some(Ok(Transport::TransportNohost)) => IcePolicy::NoHost,
        Some(Ok(Transport::TransportRelay)) => IcePolicy::Relay,
        Some(Err(_)) => return Err(FfiError::Invalid("unknown ICE transport type".into())),
    };
    let gather_continually = match rtc.continual_gathering_policy.map(Gather::try_from) {
        Some(Ok(Gather::GatherOnce)) => false,
        None | Some(Ok(Gather::GatherContinually)) => true,
        Some(Err(_)) => return Err(FfiError::Invalid("unknown gathering policy".into())),
    };
    let servers = rtc
        .ice_servers
        .iter()
        .map(|s| IceServer {
            urls: s.urls.clone(),
            username: s.username.clone().unwrap_or_default(),
            credential: s.password.clone().unwrap_or_default(),
        })
        .collect();
    let config = IceConfig {
        policy,
        servers,
        gather_continually,
    };
    // A URL that can never work is the user's mistake: say so now, not as a
    // connection that silently lacks the path it was meant to have.
    for server in &config.servers {
        for url in &server.urls {
            ServerUrl::parse(url, &server.username, &server.credential)
                .map_err(|e| FfiError::Invalid(format!("ICE server {url:?}: {e}")))?;
        }
    }
    Ok(config)
}

/// The FFI event of one engine event, with the buffer handle it hands over when it
/// is lossy data (which may be dropped); `None` for events the FFI does not carry.
pub(super) fn room_event(
    server: &FfiServer,
    room: &Room,
    room_handle: u64,
    ev: RoomEvent,
) -> Option<(RoomEv, Option<u64>)> {
    let mut lossy_buffer = None;
    let m = match ev {
        // Handled by the room's forwarder, which owns the stream readers.
        RoomEvent::RpcInvocation(_)
        | RoomEvent::StreamOpened { .. }
        | RoomEvent::StreamChunk { .. }
        | RoomEvent::StreamClosed { .. }
        | RoomEvent::StreamFailed { .. } => return None,
        RoomEvent::ParticipantConnected(p) => {
            RoomEv::ParticipantConnected(proto::ParticipantConnected {
                info: owned_participant(server, &p, room, room_handle, false),
            })
        }
        RoomEvent::ParticipantDisconnected {
            participant,
            reason,
        } => RoomEv::ParticipantDisconnected(proto::ParticipantDisconnected {
            participant_identity: participant.identity,
            disconnect_reason: proto::DisconnectReason::try_from(reason)
                .unwrap_or(proto::DisconnectReason::UnknownReason)
                as i32,
        }),
        RoomEvent::ParticipantMetadataChanged { identity, new, .. } => {
            RoomEv::ParticipantMetadataChanged(proto::ParticipantMetadataChanged {
                participant_identity: identity,
                metadata: new,
            })
        }
        RoomEvent::ParticipantNameChanged { identity, new, .. } => {
            RoomEv::ParticipantNameChanged(proto::ParticipantNameChanged {
                participant_identity: identity,
                name: new,
            })
        }
        RoomEvent::ParticipantAttributesChanged {
            identity,
            changed,
            attributes,
        } => {
            let entries = |m: HashMap<String, String>| {
                let mut v: Vec<_> = m
                    .into_iter()
                    .map(|(key, value)| proto::AttributesEntry { key, value })
                    .collect();
                v.sort_by(|a, b| a.key.cmp(&b.key));
                v
            };
            RoomEv::ParticipantAttributesChanged(proto::ParticipantAttributesChanged {
                participant_identity: identity,
                attributes: entries(attributes),
                changed_attributes: entries(changed),
            })
        }
        RoomEvent::RoomMetadataChanged { new, .. } => {
            RoomEv::RoomMetadataChanged(proto::RoomMetadataChanged { metadata: new })
        }
        RoomEvent::ActiveSpeakersChanged { identities } => {
            RoomEv::ActiveSpeakersChanged(proto::ActiveSpeakersChanged {
                participant_identities: identities,
            })
        }
        RoomEvent::ConnectionQualityChanged { identity, quality } => {
            RoomEv::ConnectionQualityChanged(proto::ConnectionQualityChanged {
                participant_identity: identity,
                quality,
            })
        }
        RoomEvent::DataReceived(d) => {
            let len = d.payload.len() as u64;
            let buffer = FfiBuffer { data: d.payload };
            let ptr = buffer.data.as_ptr() as u64;
            // The Vec's heap block does not move when the buffer moves into the table.
            let id = server.insert_handle(buffer);
            if d.kind == DataKind::Lossy {
                lossy_buffer = Some(id);
            }
            RoomEv::DataPacketReceived(proto::DataPacketReceived {
                kind: match d.kind {
                    DataKind::Reliable => proto::DataPacketKind::KindReliable,
                    DataKind::Lossy => proto::DataPacketKind::KindLossy,
                } as i32,
                participant_identity: d.participant_identity,
                value: Some(proto::data_packet_received::Value::User(
                    proto::UserPacket {
                        data: proto::OwnedBuffer {
                            handle: proto::FfiOwnedHandle { id },
                            data: proto::BufferInfo {
                                data_ptr: ptr,
                                data_len: len,
                            },
                        },
                        topic: d.topic,
                    },
                )),
            })
        }
        RoomEvent::DataPacket(p) => data_packet_event(*p)?,
        RoomEvent::ConnectionStateChanged(s) => {
            let state = match s {
                ConnectionState::Connected => proto::ConnectionState::ConnConnected,
                ConnectionState::Reconnecting => proto::ConnectionState::ConnReconnecting,
                ConnectionState::Disconnected | ConnectionState::Failed => {
                    proto::ConnectionState::ConnDisconnected
                }
                ConnectionState::Connecting => return None,
            };
            RoomEv::ConnectionStateChanged(proto::ConnectionStateChanged {
                state: state as i32,
            })
        }
        RoomEvent::Reconnecting => RoomEv::Reconnecting(proto::Reconnecting {}),
        RoomEvent::Reconnected => RoomEv::Reconnected(proto::Reconnected {}),
        RoomEvent::ParticipantsUpdated(participants) => {
            RoomEv::ParticipantsUpdated(proto::ParticipantsUpdated {
                participants: participants.iter().map(participant_info).collect(),
            })
        }
        RoomEvent::ParticipantPermissionChanged {
            identity,
            permission: p,
        } => RoomEv::ParticipantPermissionChanged(proto::ParticipantPermissionChanged {
            participant_identity: identity,
            permission: p.as_ref().map(permission),
        }),
        RoomEvent::ParticipantActive { identity } => {
            RoomEv::ParticipantActive(proto::ParticipantActive {
                participant_identity: identity,
            })
        }
        RoomEvent::RoomUpdated(info) => RoomEv::RoomUpdated(room_info(&info)),
        RoomEvent::Moved(info) => RoomEv::Moved(room_info(&info)),
        RoomEvent::ChatMessage { sender, message } => {
            RoomEv::ChatMessage(proto::ChatMessageReceived {
                message: super::chat::to_proto(&message),
                participant_identity: sender,
            })
        }
        RoomEvent::TokenRefreshed(token) => RoomEv::TokenRefreshed(proto::TokenRefreshed { token }),
        RoomEvent::Disconnected { reason } => RoomEv::Disconnected(proto::Disconnected {
            reason: disconnect_reason(reason) as i32,
            failure_reason: Some(failure_reason(reason) as i32),
        }),
        // Sent by the publish request itself, after its callback (the client looks
        // the publication up by then).
        RoomEvent::LocalTrackPublished(_) => return None,
        RoomEvent::LocalTrackUnpublished { sid } => {
            RoomEv::LocalTrackUnpublished(proto::LocalTrackUnpublished {
                publication_sid: sid,
            })
        }
        RoomEvent::LocalTrackSubscribed { sid } => {
            RoomEv::LocalTrackSubscribed(proto::LocalTrackSubscribed { track_sid: sid })
        }
        RoomEvent::TrackPublished { identity, track } => {
            RoomEv::TrackPublished(proto::TrackPublished {
                participant_identity: identity,
                publication: super::track::owned_publication(server, room, &track, true),
            })
        }
        RoomEvent::TrackUnpublished { identity, sid } => {
            RoomEv::TrackUnpublished(proto::TrackUnpublished {
                participant_identity: identity,
                publication_sid: sid,
            })
        }
        RoomEvent::TrackSubscribed {
            identity,
            sid,
            track,
        } => {
            let name = room
                .remote_participant(&identity)
                .and_then(|p| p.tracks.into_iter().find(|t| t.sid == sid))
                .map(|t| t.name)
                .unwrap_or_default();
            RoomEv::TrackSubscribed(proto::TrackSubscribed {
                participant_identity: identity,
                track: super::track::owned_remote_track(server, track, &sid, &name),
            })
        }
        RoomEvent::TrackUnsubscribed { identity, sid } => {
            RoomEv::TrackUnsubscribed(proto::TrackUnsubscribed {
                participant_identity: identity,
                track_sid: sid,
            })
        }
        RoomEvent::TrackSubscriptionFailed {
            identity,
            sid,
            error,
        } => RoomEv::TrackSubscriptionFailed(proto::TrackSubscriptionFailed {
            participant_identity: identity,
            track_sid: sid,
            error,
        }),
        RoomEvent::TrackMuted {
            identity,
            sid,
            muted: true,
        } => RoomEv::TrackMuted(proto::TrackMuted {
            participant_identity: identity,
            track_sid: sid,
        }),
        RoomEvent::TrackMuted {
            identity,
            sid,
            muted: false,
        } => RoomEv::TrackUnmuted(proto::TrackUnmuted {
            participant_identity: identity,
            track_sid: sid,
        }),
    };
    Some((m, lossy_buffer))
}

/// The FFI event of a received data packet that is not user data (DTMF,
/// transcription); `None` for kinds the FFI does not carry.
fn data_packet_event(p: livekit_core::packet::DataPacket) -> Option<RoomEv> {
    Some(match p.value {
        Some(livekit_core::packet::data_packet::Value::SipDtmf(dtmf)) => {
            RoomEv::DataPacketReceived(proto::DataPacketReceived {
                kind: proto::DataPacketKind::KindReliable as i32,
                participant_identity: p.participant_identity,
                value: Some(proto::data_packet_received::Value::SipDtmf(
                    proto::SipDtmf {
                        code: dtmf.code,
                        digit: Some(dtmf.digit),
                    },
                )),
            })
        }
        Some(livekit_core::packet::data_packet::Value::Transcription(t)) => {
            RoomEv::TranscriptionReceived(proto::TranscriptionReceived {
                participant_identity: Some(t.transcribed_participant_identity),
                track_sid: Some(t.track_id),
                segments: t
                    .segments
                    .into_iter()
                    .map(|s| proto::TranscriptionSegment {
                        id: s.id,
                        text: s.text,
                        start_time: s.start_time,
                        end_time: s.end_time,
                        r#final: s.r#final,
                        language: s.language,
                    })
                    .collect(),
            })
        }
        _ => return None,
    })
}

/// The data packet value of a transcription to publish.
pub(super) fn transcription(
    r: &proto::PublishTranscriptionRequest,
) -> livekit_core::packet::Transcription {
    livekit_core::packet::Transcription {
        transcribed_participant_identity: r.participant_identity.clone(),
        track_id: r.track_id.clone(),
        segments: r
            .segments
            .iter()
            .map(|s| livekit_core::packet::TranscriptionSegment {
                id: s.id.clone(),
                text: s.text.clone(),
                start_time: s.start_time,
                end_time: s.end_time,
                r#final: s.r#final,
                language: s.language.clone(),
            })
            .collect(),
    }
}

/// One peer connection's statistics as the official SDK lists them: the peer
/// connection, its data channels, its transport, and the chosen candidate pair with
/// both candidates; ids are prefixed with `pc` ("PUB", "SUB") so both lists can be
/// read together. Empty when the connection is not up.
pub(super) fn peer_stats(pc: &str, stats: Option<PeerStats>) -> Vec<proto::RtcStats> {
    use proto::rtc_stats::{
        CandidatePair, DataChannel, LocalCandidate, PeerConnection, RemoteCandidate, Stats,
        Transport,
    };
    let Some(s) = stats else {
        return Vec::new();
    };
    let now = crate::engine::unix_millis();
    let data = |id: String| proto::RtcStatsData { id, timestamp: now };
    let entry = |stats: Stats| proto::RtcStats { stats: Some(stats) };
    let transport_id = format!("{pc}_T01");
    let mut out = vec![entry(Stats::PeerConnection(PeerConnection {
        rtc: data(format!("{pc}_PC")),
        pc: proto::PeerConnectionStats {
            data_channels_opened: s.channels_opened,
            data_channels_closed: s.channels_closed,
        },
    }))];
    for c in &s.channels {
        let state = if c.open {
            proto::DataChannelState::DcOpen
        } else {
            proto::DataChannelState::DcClosed
        };
        out.push(entry(Stats::DataChannel(DataChannel {
            rtc: data(format!("{pc}_D{}", c.id)),
            dc: proto::DataChannelStats {
                label: c.label.clone(),
                protocol: String::new(),
                data_channel_identifier: c.id,
                state: Some(state as i32),
                messages_sent: c.messages_sent,
                bytes_sent: c.bytes_sent,
                messages_received: c.messages_received,
                bytes_received: c.bytes_received,
            },
        })));
    }
    let pair_id = s
        .path
        .as_ref()
        .map(|p| format!("{pc}_CP{}_{}", p.local.addr, p.remote.addr))
        .unwrap_or_default();
    let ice_state = match s.ice {
        IceState::New => proto::IceTransportState::IceTransportNew,
        IceState::Checking => proto::IceTransportState::IceTransportChecking,
        IceState::Connected => proto::IceTransportState::IceTransportConnected,
        IceState::Completed => proto::IceTransportState::IceTransportCompleted,
        IceState::Disconnected => proto::IceTransportState::IceTransportDisconnected,
    };
    let dtls_state = if s.dtls_connected {
        proto::DtlsTransportState::DtlsTransportConnected
    } else {
        proto::DtlsTransportState::DtlsTransportConnecting
    };
    let role = if s.controlling {
        proto::IceRole::IceControlling
    } else {
        proto::IceRole::IceControlled
    };
    out.push(entry(Stats::Transport(Transport {
        rtc: data(transport_id.clone()),
        transport: proto::TransportStats {
            packets_sent: s.transport.packets_sent,
            packets_received: s.transport.packets_received,
            bytes_sent: s.transport.bytes_sent,
            bytes_received: s.transport.bytes_received,
            ice_role: role as i32,
            ice_local_username_fragment: String::new(),
            dtls_state: Some(dtls_state as i32),
            ice_state: Some(ice_state as i32),
            selected_candidate_pair_id: pair_id.clone(),
            local_certificate_id: String::new(),
            remote_certificate_id: String::new(),
            tls_version: String::new(),
            dtls_cipher: String::new(),
            dtls_role: proto::DtlsRole::DtlsUnknown as i32,
            srtp_cipher: String::new(),
            selected_candidate_pair_changes: s.path_changes,
        },
    })));
    let Some(path) = s.path else {
        return out;
    };
    let candidate = |c: &CandidateStats| proto::IceCandidateStats {
        transport_id: transport_id.clone(),
        address: c.addr.ip().to_string(),
        port: i32::from(c.addr.port()),
        protocol: c.protocol.to_owned(),
        candidate_type: Some(match c.kind {
            CandidateType::Host => proto::IceCandidateType::Host,
            CandidateType::ServerReflexive => proto::IceCandidateType::Srflx,
            CandidateType::PeerReflexive => proto::IceCandidateType::Prflx,
            CandidateType::Relay => proto::IceCandidateType::Relay,
        } as i32),
        priority: c.priority as i32,
        url: c.relay.as_ref().map(|(_, u)| u.clone()).unwrap_or_default(),
        relay_protocol: c.relay.as_ref().map(|(t, _)| {
            (match t {
                TurnTransport::Udp => proto::IceServerTransportProtocol::TransportUdp,
                TurnTransport::Tcp => proto::IceServerTransportProtocol::TransportTcp,
                TurnTransport::Tls => proto::IceServerTransportProtocol::TransportTls,
            }) as i32
        }),
        foundation: c.foundation.clone(),
        related_address: String::new(),
        related_port: 0,
        username_fragment: String::new(),
        tcp_type: c.tcp_active.map(|active| {
            (if active {
                proto::IceTcpCandidateType::CandidateActive
            } else {
                proto::IceTcpCandidateType::CandidatePassive
            }) as i32
        }),
    };
    let local_id = format!("{pc}_I{}", path.local.addr);
    let remote_id = format!("{pc}_I{}", path.remote.addr);
    out.push(entry(Stats::CandidatePair(CandidatePair {
        rtc: data(pair_id),
        candidate_pair: proto::CandidatePairStats {
            transport_id: transport_id.clone(),
            local_candidate_id: local_id.clone(),
            remote_candidate_id: remote_id.clone(),
            state: Some(proto::IceCandidatePairState::PairSucceeded as i32),
            nominated: true,
            packets_sent: path.traffic.packets_sent,
            packets_received: path.traffic.packets_received,
            bytes_sent: path.traffic.bytes_sent,
            bytes_received: path.traffic.bytes_received,
            last_packet_sent_timestamp: path.last_sent_ms,
            last_packet_received_timestamp: path.last_received_ms,
            total_round_trip_time: 0.0,
            current_round_trip_time: 0.0,
            available_outgoing_bitrate: 0.0,
            available_incoming_bitrate: 0.0,
            requests_received: 0,
            requests_sent: 0,
            responses_received: 0,
            responses_sent: 0,
            consent_requests_sent: 0,
            packets_discarded_on_send: 0,
            bytes_discarded_on_send: 0,
        },
    })));
    out.push(entry(Stats::LocalCandidate(LocalCandidate {
        rtc: data(local_id),
        candidate: candidate(&path.local),
    })));
    out.push(entry(Stats::RemoteCandidate(RemoteCandidate {
        rtc: data(remote_id),
        candidate: candidate(&path.remote),
    })));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transcription_goes_out_and_comes_back_with_its_segments() {
        let request = proto::PublishTranscriptionRequest {
            local_participant_handle: 1,
            participant_identity: "alice".into(),
            track_id: "TR_1".into(),
            segments: vec![proto::TranscriptionSegment {
                id: "s".into(),
                text: "héllo".into(),
                start_time: 1,
                end_time: 2,
                r#final: true,
                language: "fr".into(),
            }],
            request_async_id: None,
        };
        let packet = livekit_core::packet::DataPacket {
            participant_identity: "alice".into(),
            value: Some(livekit_core::packet::data_packet::Value::Transcription(
                transcription(&request),
            )),
            ..Default::default()
        };
        let Some(RoomEv::TranscriptionReceived(t)) = data_packet_event(packet) else {
            panic!("not a transcription event");
        };
        assert_eq!(t.participant_identity.as_deref(), Some("alice"));
        assert_eq!(t.track_sid.as_deref(), Some("TR_1"));
        assert_eq!(t.segments, request.segments);
    }
}
