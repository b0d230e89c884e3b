//! Writes the seed corpora of the fuzz targets: real encoded messages of each kind,
//! alone and in short sequences, one file each, into `<dir>/<target>/` (default
//! `corpus`). Run from `fuzz/`: `cargo run --example seed [-- DIR]`.

use std::path::{Path, PathBuf};

use livekit_core::link::{self, proto as lp, LinkMessage, Msg};
use livekit_core::packet::{self, data_packet::Value as V, data_stream};
use livekit_ffi::ffi::proto as ffi;
use livekit_protocol as sig;
use prost::Message;

use ffi::ffi_request::Message as Req;
use sig::signal_response::Message as Resp;

struct Out {
    dir: PathBuf,
    count: usize,
}

impl Out {
    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.dir.join(target);
        std::fs::create_dir_all(&dir).expect("corpus directory");
        std::fs::write(dir.join(name), bytes).expect("seed written");
        self.count += 1;
    }
}

// ---- FFI requests ---------------------------------------------------------------

fn ffi_seeds(out: &mut Out) {
    let req = |m: Req| ffi::FfiRequest { message: Some(m) }.encode_to_vec();
    let frame = |channels, rate, frames| ffi::AudioFrameBufferInfo {
        data_ptr: 1,
        num_channels: channels,
        sample_rate: rate,
        samples_per_channel: frames,
    };
    let text_options = ffi::StreamTextOptions {
        topic: "chat".into(),
        ..Default::default()
    };
    let byte_options = ffi::StreamByteOptions {
        topic: "files".into(),
        name: Some("a.bin".into()),
        ..Default::default()
    };
    let seeds: Vec<(&str, Req)> = vec![
        (
            "dispose-async",
            Req::Dispose(ffi::DisposeRequest { r#async: true }),
        ),
        ("cancel", Req::Cancel(ffi::CancelRequest { async_id: 7 })),
        (
            "new-audio-source",
            Req::NewAudioSource(ffi::NewAudioSourceRequest {
                sample_rate: Some(48_000),
                num_channels: Some(2),
                queue_size_ms: Some(200),
                ..Default::default()
            }),
        ),
        (
            "capture-frame",
            Req::CaptureAudioFrame(ffi::CaptureAudioFrameRequest {
                source_handle: 1,
                buffer: frame(1, 48_000, 480),
                request_async_id: Some(9),
            }),
        ),
        (
            "clear-audio-buffer",
            Req::ClearAudioBuffer(ffi::ClearAudioBufferRequest { source_handle: 1 }),
        ),
        (
            "create-audio-track",
            Req::CreateAudioTrack(ffi::CreateAudioTrackRequest {
                name: "mic".into(),
                source_handle: 1,
            }),
        ),
        (
            "new-sox-resampler",
            Req::NewSoxResampler(ffi::NewSoxResamplerRequest {
                input_rate: 44_100.0,
                output_rate: 48_000.0,
                num_channels: 2,
                quality_recipe: ffi::SoxQualityRecipe::SoxrQualityVeryhigh as i32,
                ..Default::default()
            }),
        ),
        (
            "new-sox-resampler-quick",
            Req::NewSoxResampler(ffi::NewSoxResamplerRequest {
                input_rate: 16_000.0,
                output_rate: 8_000.0,
                num_channels: 1,
                quality_recipe: ffi::SoxQualityRecipe::SoxrQualityQuick as i32,
                ..Default::default()
            }),
        ),
        (
            "push-sox-resampler",
            Req::PushSoxResampler(ffi::PushSoxResamplerRequest {
                resampler_handle: 1,
                data_ptr: 1,
                size: 1920,
            }),
        ),
        (
            "flush-sox-resampler",
            Req::FlushSoxResampler(ffi::FlushSoxResamplerRequest {
                resampler_handle: 1,
            }),
        ),
        (
            "new-audio-resampler",
            Req::NewAudioResampler(ffi::NewAudioResamplerRequest {}),
        ),
        (
            "remix-and-resample",
            Req::RemixAndResample(ffi::RemixAndResampleRequest {
                resampler_handle: 1,
                buffer: frame(2, 48_000, 480),
                num_channels: 1,
                sample_rate: 16_000,
            }),
        ),
        (
            "new-audio-stream",
            Req::NewAudioStream(ffi::NewAudioStreamRequest {
                track_handle: 1,
                sample_rate: Some(48_000),
                num_channels: Some(1),
                ..Default::default()
            }),
        ),
        (
            "disconnect",
            Req::Disconnect(ffi::DisconnectRequest {
                room_handle: 1,
                ..Default::default()
            }),
        ),
        (
            "publish-data",
            Req::PublishData(ffi::PublishDataRequest {
                local_participant_handle: 2,
                data_ptr: 1,
                data_len: 5,
                reliable: true,
                topic: Some("t".into()),
                ..Default::default()
            }),
        ),
        (
            "set-local-metadata",
            Req::SetLocalMetadata(ffi::SetLocalMetadataRequest {
                local_participant_handle: 2,
                metadata: "{}".into(),
                ..Default::default()
            }),
        ),
        (
            "set-local-attributes",
            Req::SetLocalAttributes(ffi::SetLocalAttributesRequest {
                local_participant_handle: 2,
                attributes: vec![ffi::AttributesEntry {
                    key: "k".into(),
                    value: "v".into(),
                }],
                ..Default::default()
            }),
        ),
        (
            "publish-sip-dtmf",
            Req::PublishSipDtmf(ffi::PublishSipDtmfRequest {
                local_participant_handle: 2,
                code: 1,
                digit: "1".into(),
                ..Default::default()
            }),
        ),
        (
            "perform-rpc",
            Req::PerformRpc(ffi::PerformRpcRequest {
                local_participant_handle: 2,
                destination_identity: "alice".into(),
                method: "echo".into(),
                payload: "hi".into(),
                ..Default::default()
            }),
        ),
        (
            "register-rpc-method",
            Req::RegisterRpcMethod(ffi::RegisterRpcMethodRequest {
                local_participant_handle: 2,
                method: "echo".into(),
            }),
        ),
        (
            "send-text",
            Req::SendText(ffi::StreamSendTextRequest {
                local_participant_handle: 2,
                options: text_options.clone(),
                text: "hello".into(),
                ..Default::default()
            }),
        ),
        (
            "send-bytes",
            Req::SendBytes(ffi::StreamSendBytesRequest {
                local_participant_handle: 2,
                options: byte_options.clone(),
                bytes: b"\x00\x01".to_vec(),
                ..Default::default()
            }),
        ),
        (
            "text-stream-open",
            Req::TextStreamOpen(ffi::TextStreamOpenRequest {
                local_participant_handle: 2,
                options: text_options,
                ..Default::default()
            }),
        ),
        (
            "byte-stream-write",
            Req::ByteStreamWrite(ffi::ByteStreamWriterWriteRequest {
                writer_handle: 3,
                bytes: b"abc".to_vec(),
                ..Default::default()
            }),
        ),
        (
            "text-read-all",
            Req::TextReadAll(ffi::TextStreamReaderReadAllRequest {
                reader_handle: 4,
                ..Default::default()
            }),
        ),
        (
            "send-chat-message",
            Req::SendChatMessage(ffi::SendChatMessageRequest {
                local_participant_handle: 2,
                message: "hi".into(),
                ..Default::default()
            }),
        ),
        (
            "ready-for-room-event",
            Req::ReadyForRoomEvent(ffi::ReadyForRoomEventRequest { room_handle: 1 }),
        ),
    ];
    for (name, m) in seeds {
        out.put("ffi_request", name, &req(m));
    }
    // What came up while fuzzing (fixed), kept as seeds so that it stays fixed.
    let found: Vec<(&str, Req)> = vec![
        (
            // 2^30 output channels: terabytes asked for, the process aborted.
            "regress-remix-channels",
            Req::RemixAndResample(ffi::RemixAndResampleRequest {
                resampler_handle: 1,
                buffer: frame(1, 48_000, 480),
                num_channels: 1 << 30,
                sample_rate: 48_000,
            }),
        ),
        (
            // A queue of 4e9 ms reserved whole: the process aborted.
            "regress-source-queue",
            Req::NewAudioSource(ffi::NewAudioSourceRequest {
                sample_rate: Some(48_000),
                num_channels: Some(2),
                queue_size_ms: Some(4_000_000_000),
                ..Default::default()
            }),
        ),
        (
            // 8.8 Hz to 48 kHz: seconds and memory for 20 ms of audio.
            "regress-sox-ratio",
            Req::NewSoxResampler(ffi::NewSoxResamplerRequest {
                input_rate: 8.8,
                output_rate: 48_000.0,
                num_channels: 2,
                quality_recipe: ffi::SoxQualityRecipe::SoxrQualityVeryhigh as i32,
                ..Default::default()
            }),
        ),
    ];
    for (name, m) in found {
        out.put("ffi_request", name, &req(m));
    }
    // Video conversions: packed to planar (rows padded), planar to packed flipped.
    let video = |kind: i32, w, h, stride, to: i32, flip| {
        Req::VideoConvert(ffi::VideoConvertRequest {
            flip_y: Some(flip),
            buffer: ffi::VideoBufferInfo {
                r#type: kind,
                width: w,
                height: h,
                data_ptr: 1,
                stride,
                components: Vec::new(),
            },
            dst_type: to,
        })
    };
    let (rgba, i420, nv12, i010) = (
        ffi::VideoBufferType::Rgba as i32,
        ffi::VideoBufferType::I420 as i32,
        ffi::VideoBufferType::Nv12 as i32,
        ffi::VideoBufferType::I010 as i32,
    );
    out.put("ffi_request", "video-rgba-i420", &req(video(rgba, 6, 4, Some(32), i420, false)));
    out.put("ffi_request", "video-nv12-rgba", &req(video(nv12, 5, 3, None, rgba, true)));
    out.put("ffi_request", "video-i010-nv12", &req(video(i010, 4, 4, None, nv12, false)));
}

// ---- signal messages ------------------------------------------------------------

const DATA_SDP: &str =
    "v=0\r\na=group:BUNDLE 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\n";
const AUDIO_SDP: &str = "v=0\r\na=group:BUNDLE 0 1\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=msid:PA_alice TR_a1\r\n";

fn person(sid: &str, identity: &str, version: u32) -> sig::ParticipantInfo {
    sig::ParticipantInfo {
        sid: sid.into(),
        identity: identity.into(),
        name: identity.to_uppercase(),
        state: sig::participant_info::State::Active as i32,
        version,
        ..Default::default()
    }
}

fn audio_track(sid: &str) -> sig::TrackInfo {
    sig::TrackInfo {
        sid: sid.into(),
        r#type: sig::TrackType::Audio as i32,
        name: "mic".into(),
        source: sig::TrackSource::Microphone as i32,
        mid: "1".into(),
        ..Default::default()
    }
}

fn trickle(target: sig::SignalTarget, mid: &str) -> Resp {
    Resp::Trickle(sig::TrickleRequest {
        candidate_init: format!(
            r#"{{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 7882 typ host","sdpMid":"{mid}","sdpMLineIndex":0}}"#
        ),
        target: target as i32,
        ..Default::default()
    })
}

fn description(kind: &str, sdp: &str, id: u32) -> sig::SessionDescription {
    sig::SessionDescription {
        r#type: kind.into(),
        sdp: sdp.into(),
        id,
        ..Default::default()
    }
}

fn leave(action: sig::leave_request::Action, reason: sig::DisconnectReason) -> Resp {
    Resp::Leave(sig::LeaveRequest {
        action: action as i32,
        reason: reason as i32,
        can_reconnect: action != sig::leave_request::Action::Disconnect,
        ..Default::default()
    })
}

fn signal_seeds(out: &mut Out) {
    let encode = |ms: &[Resp]| -> Vec<u8> {
        ms.iter()
            .flat_map(|m| {
                sig::SignalResponse {
                    message: Some(m.clone()),
                }
                .encode_to_vec()
            })
            .collect()
    };
    let mut alice = person("PA_alice", "alice", 2);
    alice.tracks = vec![audio_track("TR_a1")];
    let carol = person("PA_carol", "carol", 1);
    let carol_gone = sig::ParticipantInfo {
        state: sig::participant_info::State::Disconnected as i32,
        version: 2,
        ..carol.clone()
    };
    let join = sig::JoinResponse {
        room: Some(sig::Room {
            sid: "RM_x".into(),
            name: "x".into(),
            metadata: "m".into(),
            ..Default::default()
        }),
        participant: Some(person("PA_me", "me", 1)),
        other_participants: vec![alice.clone(), person("PA_bob", "bob", 1)],
        subscriber_primary: true,
        ping_interval: 5,
        ping_timeout: 15,
        ..Default::default()
    };
    let update =
        |ps: Vec<sig::ParticipantInfo>| Resp::Update(sig::ParticipantUpdate { participants: ps });
    let singles: Vec<(&str, Resp)> = vec![
        ("join", Resp::Join(join.clone())),
        ("answer", Resp::Answer(description("answer", DATA_SDP, 0))),
        ("offer", Resp::Offer(description("offer", DATA_SDP, 2))),
        (
            "offer-audio",
            Resp::Offer(description("offer", AUDIO_SDP, 3)),
        ),
        (
            "trickle-subscriber",
            trickle(sig::SignalTarget::Subscriber, "0"),
        ),
        (
            "trickle-publisher",
            trickle(sig::SignalTarget::Publisher, "0"),
        ),
        ("update-join", update(vec![carol.clone()])),
        ("update-leave", update(vec![carol_gone.clone()])),
        ("update-tracks", update(vec![alice.clone()])),
        (
            "room-update",
            Resp::RoomUpdate(sig::RoomUpdate {
                room: Some(sig::Room {
                    sid: "RM_fuzz".into(),
                    metadata: "new".into(),
                    num_participants: 3,
                    active_recording: true,
                    ..Default::default()
                }),
            }),
        ),
        (
            "speakers",
            Resp::SpeakersChanged(sig::SpeakersChanged {
                speakers: vec![sig::SpeakerInfo {
                    sid: "PA_alice".into(),
                    level: 0.5,
                    active: true,
                }],
            }),
        ),
        (
            "quality",
            Resp::ConnectionQuality(sig::ConnectionQualityUpdate {
                updates: vec![sig::ConnectionQualityInfo {
                    participant_sid: "PA_bob".into(),
                    quality: 2,
                    score: 3.5,
                }],
            }),
        ),
        (
            "leave-disconnect",
            leave(
                sig::leave_request::Action::Disconnect,
                sig::DisconnectReason::RoomDeleted,
            ),
        ),
        (
            "leave-resume",
            leave(
                sig::leave_request::Action::Resume,
                sig::DisconnectReason::SignalClose,
            ),
        ),
        (
            "leave-reconnect",
            leave(
                sig::leave_request::Action::Reconnect,
                sig::DisconnectReason::Migration,
            ),
        ),
        (
            "mute",
            Resp::Mute(sig::MuteTrackRequest {
                sid: "TR_mine".into(),
                muted: true,
            }),
        ),
        (
            "track-published",
            Resp::TrackPublished(sig::TrackPublishedResponse {
                cid: "mic-cid".into(),
                track: Some(audio_track("TR_mine")),
            }),
        ),
        (
            "track-unpublished",
            Resp::TrackUnpublished(sig::TrackUnpublishedResponse {
                track_sid: "TR_mine".into(),
            }),
        ),
        ("refresh-token", Resp::RefreshToken("new-token".into())),
        (
            "request-response",
            Resp::RequestResponse(sig::RequestResponse {
                request_id: 1,
                reason: 2,
                message: "denied".into(),
                ..Default::default()
            }),
        ),
        (
            "reconnect",
            Resp::Reconnect(sig::ReconnectResponse {
                last_message_seq: 3,
                ..Default::default()
            }),
        ),
        (
            "room-moved",
            Resp::RoomMoved(sig::RoomMovedResponse {
                room: Some(sig::Room {
                    sid: "RM_y".into(),
                    name: "y".into(),
                    ..Default::default()
                }),
                token: "moved-token".into(),
                participant: Some(person("PA_me2", "me", 1)),
                other_participants: vec![carol.clone()],
            }),
        ),
        (
            "subscription-error",
            Resp::SubscriptionResponse(sig::SubscriptionResponse {
                track_sid: "TR_a1".into(),
                err: 1,
            }),
        ),
        (
            "track-subscribed",
            Resp::TrackSubscribed(sig::TrackSubscribed {
                track_sid: "TR_mine".into(),
            }),
        ),
        (
            "pong",
            Resp::PongResp(sig::Pong {
                last_ping_timestamp: 1,
                timestamp: 2,
            }),
        ),
    ];
    for (name, m) in &singles {
        out.put("signal_response", name, &encode(std::slice::from_ref(m)));
    }
    // Short traces, as a server sends them.
    let traces: Vec<(&str, Vec<Resp>)> = vec![
        (
            "trace-offer-trickle",
            vec![
                Resp::Offer(description("offer", AUDIO_SDP, 4)),
                trickle(sig::SignalTarget::Subscriber, "1"),
                trickle(sig::SignalTarget::Subscriber, "7"),
            ],
        ),
        (
            "trace-join-leave",
            vec![update(vec![carol.clone()]), update(vec![carol_gone])],
        ),
        (
            "trace-resume",
            vec![
                leave(
                    sig::leave_request::Action::Resume,
                    sig::DisconnectReason::SignalClose,
                ),
                Resp::Reconnect(sig::ReconnectResponse {
                    last_message_seq: 9,
                    ..Default::default()
                }),
                Resp::Answer(description("answer", DATA_SDP, 0)),
            ],
        ),
        (
            "trace-rejoin",
            vec![
                leave(
                    sig::leave_request::Action::Reconnect,
                    sig::DisconnectReason::ServerShutdown,
                ),
                Resp::Join(join.clone()),
            ],
        ),
        (
            "trace-publish",
            vec![
                Resp::TrackPublished(sig::TrackPublishedResponse {
                    cid: "mic-cid".into(),
                    track: Some(audio_track("TR_mine")),
                }),
                Resp::Mute(sig::MuteTrackRequest {
                    sid: "TR_mine".into(),
                    muted: true,
                }),
                Resp::TrackUnpublished(sig::TrackUnpublishedResponse {
                    track_sid: "TR_mine".into(),
                }),
            ],
        ),
    ];
    for (name, ms) in &traces {
        out.put("signal_response", name, &encode(ms));
    }
}

// ---- data packets ---------------------------------------------------------------

fn packet(sender: &str, sequence: u32, value: V) -> packet::DataPacket {
    packet::DataPacket {
        participant_identity: sender.into(),
        participant_sid: format!("PA_{sender}"),
        sequence,
        value: Some(value),
        ..Default::default()
    }
}

fn user(payload: &[u8], topic: Option<&str>) -> V {
    V::User(packet::UserPacket {
        payload: payload.to_vec(),
        topic: topic.map(str::to_owned),
        ..Default::default()
    })
}

fn rpc_request(id: &str, method: &str) -> V {
    V::RpcRequest(packet::RpcRequest {
        id: id.into(),
        method: method.into(),
        payload: "ping".into(),
        response_timeout_ms: 10_000,
        version: 1,
        ..Default::default()
    })
}

fn header(id: &str, topic: &str, text: bool, total: Option<u64>) -> V {
    use data_stream::header::ContentHeader;
    V::StreamHeader(data_stream::Header {
        stream_id: id.into(),
        timestamp: 1,
        topic: topic.into(),
        mime_type: if text {
            "text/plain"
        } else {
            "application/octet-stream"
        }
        .into(),
        total_length: total,
        content_header: Some(if text {
            ContentHeader::TextHeader(Default::default())
        } else {
            ContentHeader::ByteHeader(data_stream::ByteHeader { name: "f".into() })
        }),
        ..Default::default()
    })
}

fn chunk(id: &str, index: u64, content: &[u8]) -> V {
    V::StreamChunk(data_stream::Chunk {
        stream_id: id.into(),
        chunk_index: index,
        content: content.to_vec(),
        ..Default::default()
    })
}

fn trailer(id: &str, reason: &str) -> V {
    V::StreamTrailer(data_stream::Trailer {
        stream_id: id.into(),
        reason: reason.into(),
        ..Default::default()
    })
}

/// A data channel message and whether it came on the lossy channel.
type Framed = (bool, Vec<u8>);

fn data_seeds(out: &mut Out) {
    let ack = |id: &str| {
        V::RpcAck(packet::RpcAck {
            request_id: id.into(),
        })
    };
    let response = |id: &str, ok: bool| {
        V::RpcResponse(packet::RpcResponse {
            request_id: id.into(),
            value: Some(if ok {
                packet::rpc_response::Value::Payload("pong".into())
            } else {
                packet::rpc_response::Value::Error(packet::RpcError {
                    code: 1500,
                    message: "failed".into(),
                    data: String::new(),
                })
            }),
        })
    };
    let singles: Vec<(&str, packet::DataPacket)> = vec![
        (
            "user-reliable",
            packet("alice", 1, user(b"hello", Some("chat"))),
        ),
        (
            "user-lossy",
            packet::DataPacket {
                kind: 1,
                ..packet("bob", 0, user(b"x", None))
            },
        ),
        ("user-stranger", packet("dave", 5, user(b"hi", None))),
        ("rpc-request", packet("alice", 2, rpc_request("r1", "echo"))),
        (
            "rpc-request-unknown",
            packet("bob", 1, rpc_request("r2", "nope")),
        ),
        ("rpc-ack", packet("alice", 3, ack("req-1"))),
        ("rpc-response", packet("alice", 4, response("req-1", true))),
        ("rpc-error", packet("bob", 2, response("req-2", false))),
        (
            "stream-header",
            packet("alice", 5, header("s1", "handled", true, Some(5))),
        ),
        (
            "stream-header-bytes",
            packet("bob", 3, header("s2", "files", false, None)),
        ),
        ("stream-chunk", packet("alice", 6, chunk("s1", 0, b"hello"))),
        ("stream-trailer", packet("alice", 7, trailer("s1", ""))),
        (
            "chat",
            packet(
                "bob",
                4,
                V::ChatMessage(packet::ChatMessage {
                    id: "c1".into(),
                    timestamp: 1,
                    message: "hey".into(),
                    ..Default::default()
                }),
            ),
        ),
        (
            "sip-dtmf",
            packet(
                "bob",
                5,
                V::SipDtmf(packet::SipDtmf {
                    code: 1,
                    digit: "1".into(),
                }),
            ),
        ),
        (
            "transcription",
            packet(
                "bob",
                6,
                V::Transcription(packet::Transcription {
                    transcribed_participant_identity: "bob".into(),
                    track_id: "TR_b".into(),
                    segments: vec![packet::TranscriptionSegment {
                        id: "s".into(),
                        text: "words".into(),
                        r#final: true,
                        ..Default::default()
                    }],
                }),
            ),
        ),
    ];
    for (name, p) in &singles {
        out.put("data_packet", name, &p.encode_to_vec());
    }
    let reliable = |p: packet::DataPacket| (false, p.encode_to_vec());
    let sequences: Vec<(&str, Vec<Framed>)> = vec![
        (
            "seq-duplicates",
            vec![
                reliable(packet("alice", 1, user(b"a", None))),
                reliable(packet("alice", 2, user(b"b", None))),
                reliable(packet("alice", 2, user(b"b", None))),
                reliable(packet("alice", 1, user(b"a", None))),
                (true, packet("bob", 0, user(b"l", None)).encode_to_vec()),
            ],
        ),
        (
            "seq-text-stream",
            vec![
                reliable(packet("alice", 1, header("t1", "handled", true, Some(6)))),
                reliable(packet("alice", 2, chunk("t1", 0, b"abc"))),
                reliable(packet("alice", 3, chunk("t1", 1, b"def"))),
                reliable(packet("alice", 4, trailer("t1", ""))),
            ],
        ),
        (
            "seq-byte-stream-broken",
            vec![
                reliable(packet("bob", 1, header("b1", "files", false, Some(4)))),
                reliable(packet("bob", 2, chunk("b1", 1, b"zz"))),
                reliable(packet("bob", 3, header("b2", "files", false, None))),
                reliable(packet("bob", 4, chunk("b2", 0, b"zz"))),
                reliable(packet("bob", 5, trailer("b2", "aborted"))),
            ],
        ),
        (
            "seq-rpc",
            vec![
                reliable(packet("alice", 1, ack("req-1"))),
                reliable(packet("alice", 2, response("req-1", true))),
                reliable(packet("bob", 1, response("req-2", false))),
                reliable(packet("alice", 3, rpc_request("r9", "echo"))),
            ],
        ),
    ];
    for (name, ps) in &sequences {
        out.put("data_packet", name, &livekit_fuzz::frame_packets(ps));
    }
}

// ---- link frames ----------------------------------------------------------------

fn link_seeds(out: &mut Out) {
    let welcome = Msg::Welcome(lp::Welcome {
        version: u32::from(link::VERSION),
        gateway: "gw".into(),
        unix_time_ms: 1_700_000_000_000,
    });
    let connected = Msg::State(lp::State {
        state: 2,
        failure_reason: 0,
    });
    let joined = Msg::Joined(lp::Joined {
        room: "room".into(),
        identity: "device".into(),
        sid: "PA_dev".into(),
        participants: vec!["alice".into()],
    });
    let data = |p: packet::DataPacket, kind: u32| {
        Msg::Packet(lp::Packet {
            kind,
            data: p.encode_to_vec(),
        })
    };
    let session = vec![
        welcome.clone(),
        connected.clone(),
        joined.clone(),
        data(packet("alice", 1, user(b"hi", Some("t"))), 0),
        data(packet("alice", 0, user(b"lossy", None)), 1),
        Msg::Ping(lp::Ping { id: 3 }),
    ];
    let rpc = vec![
        welcome.clone(),
        connected.clone(),
        data(packet("alice", 1, rpc_request("r1", "echo")), 0),
        data(packet("alice", 2, rpc_request("r2", "nope")), 0),
        Msg::ParticipantLeft(lp::ParticipantLeft {
            identity: "alice".into(),
        }),
    ];
    let streams = vec![
        welcome.clone(),
        connected.clone(),
        data(packet("alice", 1, header("s1", "chat", true, Some(3))), 0),
        data(packet("alice", 2, chunk("s1", 0, b"abc")), 0),
        data(packet("alice", 3, trailer("s1", "")), 0),
        data(packet("bob", 1, header("s2", "chat", false, None)), 0),
        data(packet("bob", 2, chunk("s2", 1, b"x")), 0),
    ];
    let ends = vec![
        welcome.clone(),
        Msg::State(lp::State {
            state: 3,
            failure_reason: 6,
        }),
        connected.clone(),
        Msg::State(lp::State {
            state: 4,
            failure_reason: 2,
        }),
        Msg::Refused(lp::Refused {
            reason: "busy".into(),
        }),
    ];
    let bad_version = vec![Msg::Welcome(lp::Welcome {
        version: 9,
        ..Default::default()
    })];
    let traces: Vec<(&str, Vec<Msg>)> = vec![
        ("session", session),
        ("rpc", rpc),
        ("streams", streams),
        ("states", ends),
        ("bad-version", bad_version),
    ];
    for (i, (name, msgs)) in traces.iter().enumerate() {
        // As frames on the wire (first byte even) ...
        let mut wire = vec![(i as u8) << 1];
        for m in msgs {
            wire.extend(link::frame(m.clone()).expect("a frame"));
        }
        out.put("link_frames", &format!("wire-{name}"), &wire);
        // ... and as messages the target frames itself (first byte odd).
        let mut messages = vec![((i as u8) << 1) | 1];
        for m in msgs {
            LinkMessage {
                message: Some(m.clone()),
            }
            .encode_length_delimited(&mut messages)
            .expect("encoded");
        }
        out.put("link_frames", &format!("msgs-{name}"), &messages);
    }
    // A frame with a bad checksum, then noise, then a good frame.
    let mut noisy = vec![0x10];
    let mut bad = link::frame(welcome.clone()).expect("a frame");
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    noisy.extend(bad);
    noisy.extend([0xA5, 0x00, 0xA5, 0x4C, 0x01, 0xff, 0xff]);
    noisy.extend(link::frame(welcome).expect("a frame"));
    out.put("link_frames", "wire-noise", &noisy);
    // Came up while fuzzing (fixed): a gateway clock past i64 overflowed the device's.
    let mut late = vec![1];
    LinkMessage {
        message: Some(Msg::Welcome(lp::Welcome {
            version: u32::from(link::VERSION),
            gateway: String::new(),
            unix_time_ms: 1 << 63,
        })),
    }
    .encode_length_delimited(&mut late)
    .expect("encoded");
    out.put("link_frames", "regress-welcome-time", &late);
}

// ---- ICE: STUN answers and server URLs -------------------------------------------

/// A STUN Binding success answer carrying `attrs` (its transaction id is replaced by
/// the target).
fn stun_answer(attrs: &[u8]) -> Vec<u8> {
    let mut p = vec![0x01, 0x01];
    p.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    p.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
    p.extend_from_slice(&[0; 12]);
    p.extend_from_slice(attrs);
    p
}

fn ice_seeds(out: &mut Out) {
    // XOR-MAPPED-ADDRESS 203.0.113.7:40000 (port and address XORed with the cookie).
    let v4 = [
        0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xbd, 0x52, 0xea, 0x12, 0xd5, 0x45,
    ];
    let mut stun = vec![0u8];
    stun.extend(stun_answer(&v4));
    out.put("ice", "stun-v4", &stun);
    // An IPv6 one (20 bytes of value) after an unknown attribute.
    let mut attrs = vec![0x80, 0x22, 0x00, 0x04, b't', b'e', b's', b't'];
    attrs.extend_from_slice(&[0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xbc, 0x52]);
    attrs.extend_from_slice(&[0x30; 16]);
    let mut stun = vec![0u8];
    stun.extend(stun_answer(&attrs));
    out.put("ice", "stun-v6", &stun);
    let urls = "stun:stun.example.org\nturn:10.0.0.1:3478?transport=udp\n\
                turns:turn.example.org:443?transport=tcp\nturn:[2001:db8::1]:3479\n\
                turn:h:99999\nTURN://h?transport=tcp&x=y\n";
    let mut text = vec![1u8];
    text.extend_from_slice(urls.as_bytes());
    out.put("ice", "urls", &text);
}

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "corpus".into());
    let mut out = Out {
        dir: Path::new(&dir).to_path_buf(),
        count: 0,
    };
    ffi_seeds(&mut out);
    signal_seeds(&mut out);
    data_seeds(&mut out);
    link_seeds(&mut out);
    ice_seeds(&mut out);
    println!("{} seeds written under {dir}", out.count);
}
