//! The device against a scripted gateway: frames in, frames and events out.

use super::*;
use alloc::string::ToString;
use alloc::vec;
use livekit_core::link::LinkMessage;
use prost::Message;

const URL: &str = "ws://127.0.0.1:7880";
const TOKEN: &str = "token";

fn device() -> Device {
    Device::new(
        Config {
            device_id: "dev-1".to_string(),
            ..Config::default()
        },
        42,
    )
}

/// Everything the device wrote, decoded.
fn sent(d: &mut Device) -> Vec<Msg> {
    let mut dec = Decoder::new();
    while let Some(f) = d.poll_transmit() {
        dec.push(&f);
    }
    core::iter::from_fn(|| dec.next_message())
        .map(|m| m.unwrap().message.unwrap())
        .collect()
}

fn events(d: &mut Device) -> Vec<Event> {
    core::iter::from_fn(|| d.poll_event()).collect()
}

fn feed(d: &mut Device, now: u64, m: Msg) {
    let f = link::encode(&LinkMessage { message: Some(m) }).unwrap();
    d.handle_input(now, &f);
}

fn state(s: ConnectionState, r: FailureReason) -> Msg {
    Msg::State(lp::State {
        state: s as u32,
        failure_reason: r as u32,
    })
}

fn welcome() -> Msg {
    Msg::Welcome(lp::Welcome {
        version: u32::from(link::VERSION),
        gateway: "test".to_string(),
        unix_time_ms: 1_700_000_000_000,
    })
}

fn packet_from(sender: &str, value: data_packet::Value) -> Msg {
    let p = packet::DataPacket {
        participant_identity: sender.to_string(),
        value: Some(value),
        ..Default::default()
    };
    Msg::Packet(lp::Packet {
        kind: 0,
        data: p.encode_to_vec(),
    })
}

fn values(msgs: &[Msg]) -> Vec<packet::DataPacket> {
    msgs.iter()
        .filter_map(|m| match m {
            Msg::Packet(p) => Some(packet::DataPacket::decode(p.data.as_slice()).unwrap()),
            _ => None,
        })
        .collect()
}

/// Runs the device's timers (the gateway answering its pings) until it reports
/// something.
fn run_until_event(d: &mut Device, mut now: u64) -> Vec<Event> {
    loop {
        let evs = events(d);
        if !evs.is_empty() {
            return evs;
        }
        now = d.poll_timeout().unwrap().max(now);
        d.handle_timeout(now);
        for m in sent(d) {
            if let Msg::Ping(p) = m {
                feed(d, now, Msg::Pong(lp::Pong { id: p.id }));
            }
        }
    }
}

/// A device joined through a gateway at time 0.
fn connected() -> Device {
    let mut d = device();
    d.connect(0, URL, TOKEN).unwrap();
    assert!(d.wants_link(0));
    d.link_up(0);
    feed(&mut d, 1, welcome());
    feed(
        &mut d,
        2,
        state(ConnectionState::Connecting, FailureReason::None),
    );
    feed(
        &mut d,
        3,
        Msg::Joined(lp::Joined {
            room: "r".to_string(),
            identity: "esp".to_string(),
            sid: "PA_1".to_string(),
            participants: vec!["agent".to_string()],
        }),
    );
    feed(
        &mut d,
        4,
        state(ConnectionState::Connected, FailureReason::None),
    );
    let _ = sent(&mut d);
    let _ = events(&mut d);
    d
}

#[test]
fn connecting_says_hello_then_connect_and_follows_the_gateway_state() {
    let mut d = device();
    assert_eq!(d.state(), ConnectionState::Disconnected);
    assert!(!d.wants_link(0), "no session, no link");
    assert_eq!(
        d.connect(0, "", TOKEN),
        Err(DeviceError::InvalidArgument("server URL"))
    );
    d.connect(0, URL, TOKEN).unwrap();
    assert_eq!(d.connect(0, URL, TOKEN), Err(DeviceError::AlreadyConnected));
    d.link_up(0);
    let out = sent(&mut d);
    assert!(matches!(&out[..], [Msg::Hello(h)] if h.device_id == "dev-1" && h.version == 1));
    feed(&mut d, 5, welcome());
    let out = sent(&mut d);
    assert!(matches!(&out[..], [Msg::Connect(c)] if c.url == URL && c.token == TOKEN));
    feed(
        &mut d,
        6,
        state(ConnectionState::Connected, FailureReason::None),
    );
    assert_eq!(d.state(), ConnectionState::Connected);
    assert_eq!(
        events(&mut d),
        vec![
            Event::StateChanged {
                state: ConnectionState::Connecting,
                reason: FailureReason::None
            },
            Event::StateChanged {
                state: ConnectionState::Connected,
                reason: FailureReason::None
            },
        ]
    );
}

#[test]
fn a_refused_token_fails_with_the_gateway_reason_and_stops_retrying() {
    let mut d = device();
    d.connect(0, URL, TOKEN).unwrap();
    d.link_up(0);
    feed(&mut d, 1, welcome());
    feed(
        &mut d,
        2,
        state(ConnectionState::Failed, FailureReason::Unauthorized),
    );
    assert_eq!(d.state(), ConnectionState::Failed);
    assert_eq!(d.failure_reason(), FailureReason::Unauthorized);
    d.link_down(3);
    assert!(!d.wants_link(100_000));
    // A new connect starts over.
    d.connect(200_000, URL, TOKEN).unwrap();
    assert_eq!(d.failure_reason(), FailureReason::None);
    assert!(d.wants_link(200_000));
}

#[test]
fn a_lost_link_reconnects_with_backoff_then_gives_up_with_max_retries() {
    let mut d = connected();
    d.link_down(1_000);
    assert_eq!(d.state(), ConnectionState::Reconnecting);
    let mut now = 1_000;
    let mut attempts = 0;
    while d.state() == ConnectionState::Reconnecting {
        let at = d.poll_timeout().unwrap();
        assert!(at >= now);
        now = at;
        assert!(d.wants_link(now));
        attempts += 1;
        d.link_down(now); // the gateway still cannot be reached
    }
    assert_eq!(attempts, RetryPolicy::default().max_attempts);
    assert_eq!(d.state(), ConnectionState::Failed);
    assert_eq!(d.failure_reason(), FailureReason::MaxRetries);
}

#[test]
fn a_gateway_never_reached_is_unreachable() {
    let mut d = device();
    d.connect(0, URL, TOKEN).unwrap();
    let mut now = 0;
    for _ in 0..=RetryPolicy::default().max_attempts {
        if d.state() == ConnectionState::Failed {
            break;
        }
        now = d.poll_timeout().unwrap_or(now);
        d.link_down(now);
    }
    assert_eq!(d.state(), ConnectionState::Failed);
    assert_eq!(d.failure_reason(), FailureReason::Unreachable);
}

#[test]
fn after_a_new_link_the_session_is_rejoined_and_queued_packets_go_out() {
    let mut d = connected();
    d.link_down(1_000);
    d.publish_data(1_001, b"kept", Some("t"), &[], DataKind::Reliable)
        .unwrap();
    d.publish_data(1_002, b"lossy", None, &[], DataKind::Lossy)
        .unwrap();
    assert!(d.poll_transmit().is_none(), "nothing written while down");
    let at = d.poll_timeout().unwrap();
    d.link_up(at);
    feed(&mut d, at, welcome());
    feed(
        &mut d,
        at,
        state(ConnectionState::Connecting, FailureReason::None),
    );
    assert_eq!(d.state(), ConnectionState::Reconnecting);
    feed(
        &mut d,
        at,
        state(ConnectionState::Connected, FailureReason::None),
    );
    assert_eq!(d.state(), ConnectionState::Connected);
    let out = sent(&mut d);
    assert!(matches!(out[0], Msg::Hello(_)));
    assert!(matches!(out[1], Msg::Connect(_)));
    let data = values(&out);
    assert_eq!(data.len(), 1, "the lossy packet was not kept");
    assert!(matches!(&data[0].value, Some(data_packet::Value::User(u)) if u.payload == b"kept"));
}

#[test]
fn a_silent_gateway_is_pinged_then_dropped() {
    let mut d = connected();
    let ping_at = d.poll_timeout().unwrap();
    d.handle_timeout(ping_at);
    assert!(matches!(&sent(&mut d)[..], [Msg::Ping(_)]));
    let mut now = ping_at;
    while d.state() == ConnectionState::Connected {
        now = d.poll_timeout().unwrap();
        d.handle_timeout(now);
    }
    assert_eq!(d.state(), ConnectionState::Reconnecting);
    assert!(d.take_link_drop());
    assert!(!d.take_link_drop());
    assert!(now >= 4 + Config::default().link_timeout_ms);
}

#[test]
fn rpc_is_answered_for_registered_methods_only() {
    let mut d = connected();
    d.register_rpc_method("echo");
    let request = |id: &str, method: &str| {
        data_packet::Value::RpcRequest(packet::RpcRequest {
            id: id.to_string(),
            method: method.to_string(),
            payload: "hi".to_string(),
            response_timeout_ms: 10_000,
            version: 1,
            ..Default::default()
        })
    };
    feed(&mut d, 10, packet_from("agent", request("r1", "nope")));
    let out = values(&sent(&mut d));
    assert!(matches!(&out[0].value, Some(data_packet::Value::RpcAck(a)) if a.request_id == "r1"));
    assert!(
        matches!(&out[1].value, Some(data_packet::Value::RpcResponse(r))
        if matches!(&r.value, Some(packet::rpc_response::Value::Error(e)) if e.code == ErrorCode::UnsupportedMethod as u32))
    );
    assert_eq!(out[1].destination_identities, vec!["agent".to_string()]);

    feed(&mut d, 11, packet_from("agent", request("r2", "echo")));
    let _ack = sent(&mut d);
    let inv = match &events(&mut d)[..] {
        [Event::RpcInvocation(inv)] => inv.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!((inv.caller.as_str(), inv.payload.as_str()), ("agent", "hi"));
    assert!(d.rpc_respond(12, inv.id, Ok("HI".to_string())));
    assert!(!d.rpc_respond(12, inv.id, Ok("again".to_string())));
    let out = values(&sent(&mut d));
    assert!(
        matches!(&out[0].value, Some(data_packet::Value::RpcResponse(r))
        if r.request_id == "r2" && r.value == Some(packet::rpc_response::Value::Payload("HI".to_string())))
    );
}

#[test]
fn rpc_calls_resolve_time_out_and_fail_when_the_callee_leaves() {
    let mut d = connected();
    let call = d.perform_rpc(10, "agent", "add", "1,2", 5_000).unwrap();
    let out = values(&sent(&mut d));
    let Some(data_packet::Value::RpcRequest(req)) = out[0].value.clone() else {
        panic!("{out:?}")
    };
    assert_eq!(req.id.len(), 36, "a UUID");
    assert_eq!(out[0].destination_identities, vec!["agent".to_string()]);
    feed(
        &mut d,
        20,
        packet_from(
            "agent",
            data_packet::Value::RpcAck(packet::RpcAck {
                request_id: req.id.clone(),
            }),
        ),
    );
    feed(
        &mut d,
        30,
        packet_from(
            "agent",
            data_packet::Value::RpcResponse(packet::RpcResponse {
                request_id: req.id.clone(),
                value: Some(packet::rpc_response::Value::Payload("3".to_string())),
            }),
        ),
    );
    assert_eq!(
        events(&mut d),
        vec![Event::RpcResult {
            call,
            outcome: Ok("3".to_string())
        }]
    );

    let unanswered = d.perform_rpc(40, "agent", "slow", "", 5_000).unwrap();
    let evs = run_until_event(&mut d, 40);
    assert!(
        matches!(&evs[..], [Event::RpcResult { call, outcome: Err(e) }]
        if *call == unanswered && e.code == ErrorCode::ConnectionTimeout as u32)
    );

    let orphan = d.perform_rpc(50, "agent", "x", "", 5_000).unwrap();
    feed(
        &mut d,
        60,
        Msg::ParticipantLeft(lp::ParticipantLeft {
            identity: "agent".to_string(),
        }),
    );
    let evs = events(&mut d);
    assert!(matches!(&evs[0], Event::RpcResult { call, outcome: Err(e) }
        if *call == orphan && e.code == ErrorCode::RecipientDisconnected as u32));
    assert!(matches!(&evs[1], Event::ParticipantLeft { identity } if identity == "agent"));
}

#[test]
fn streams_on_registered_topics_are_received_and_others_ignored() {
    let mut d = connected();
    d.register_stream_topic("chat");
    let header = |id: &str, topic: &str| {
        data_packet::Value::StreamHeader(data_stream::Header {
            stream_id: id.to_string(),
            topic: topic.to_string(),
            content_header: Some(data_stream::header::ContentHeader::TextHeader(
                data_stream::TextHeader::default(),
            )),
            ..Default::default()
        })
    };
    let chunk = |id: &str, i: u64, c: &[u8]| {
        data_packet::Value::StreamChunk(data_stream::Chunk {
            stream_id: id.to_string(),
            chunk_index: i,
            content: c.to_vec(),
            ..Default::default()
        })
    };
    let trailer = |id: &str, reason: &str| {
        data_packet::Value::StreamTrailer(data_stream::Trailer {
            stream_id: id.to_string(),
            reason: reason.to_string(),
            ..Default::default()
        })
    };
    feed(&mut d, 10, packet_from("agent", header("s1", "other")));
    feed(&mut d, 10, packet_from("agent", chunk("s1", 0, b"ignored")));
    feed(&mut d, 10, packet_from("agent", trailer("s1", "")));
    assert!(events(&mut d).is_empty());

    feed(&mut d, 11, packet_from("agent", header("s2", "chat")));
    feed(
        &mut d,
        11,
        packet_from("agent", chunk("s2", 0, "héllo".as_bytes())),
    );
    feed(&mut d, 11, packet_from("agent", trailer("s2", "")));
    feed(&mut d, 12, packet_from("agent", header("s3", "chat")));
    feed(&mut d, 12, packet_from("agent", trailer("s3", "cancelled")));
    let evs = events(&mut d);
    assert!(
        matches!(&evs[0], Event::StreamOpened { sender, header, is_text: true }
        if sender == "agent" && header.topic == "chat")
    );
    assert!(
        matches!(&evs[1], Event::StreamChunk { id, index: 0, content } if id == "s2" && content == "héllo".as_bytes())
    );
    assert!(
        matches!(&evs[2], Event::StreamClosed { id, reason } if id == "s2" && reason.is_empty())
    );
    assert!(
        matches!(&evs[4], Event::StreamClosed { id, reason } if id == "s3" && reason == "cancelled")
    );
}

#[test]
fn outgoing_streams_are_chunked_and_bounded_by_the_writer_limit() {
    let mut d = connected();
    let text = StreamOptions {
        topic: "chat".to_string(),
        is_text: true,
        ..Default::default()
    };
    let id = d.stream_open(10, &text).unwrap();
    let big = "é".repeat(10_000); // 20000 bytes: two chunks
    d.stream_write(11, &id, big.as_bytes()).unwrap();
    d.stream_close(12, &id, "").unwrap();
    let out = values(&sent(&mut d));
    assert!(
        matches!(&out[0].value, Some(data_packet::Value::StreamHeader(h))
        if h.topic == "chat" && h.timestamp == 1_700_000_000_000 + 9 && h.mime_type == "text/plain")
    );
    let chunks: Vec<_> = out
        .iter()
        .filter_map(|p| match &p.value {
            Some(data_packet::Value::StreamChunk(c)) => Some(c.content.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(chunks.len(), 2);
    assert!(chunks.iter().all(|c| core::str::from_utf8(c).is_ok()));
    assert_eq!(chunks.concat(), big.as_bytes());
    assert!(
        matches!(&out.last().unwrap().value, Some(data_packet::Value::StreamTrailer(t)) if t.reason.is_empty())
    );

    let ids: Vec<_> = (0..4).map(|_| d.stream_open(20, &text).unwrap()).collect();
    assert!(matches!(
        d.stream_open(20, &text),
        Err(DeviceError::Stream(StreamError::TooManyStreams {
            limit: 4
        }))
    ));
    d.stream_close(21, &ids[0], "").unwrap();
    assert!(
        d.stream_open(22, &text).is_ok(),
        "a closed stream frees its slot"
    );
    assert!(matches!(
        d.stream_write(23, &ids[1], &[0xff, 0xfe]),
        Err(DeviceError::Stream(StreamError::InvalidUtf8 { .. }))
    ));
}

#[test]
fn a_gateway_clock_past_i64_is_taken_without_overflow() {
    // Came up while fuzzing (fuzz/corpus/link_frames/regress-welcome-time).
    let mut d = device();
    d.connect(0, URL, TOKEN).unwrap();
    d.link_up(0);
    feed(
        &mut d,
        5,
        Msg::Welcome(lp::Welcome {
            version: u32::from(link::VERSION),
            gateway: "test".to_string(),
            unix_time_ms: 1 << 63,
        }),
    );
    feed(
        &mut d,
        6,
        state(ConnectionState::Connected, FailureReason::None),
    );
    let text = StreamOptions {
        topic: "chat".to_string(),
        is_text: true,
        ..Default::default()
    };
    assert!(d.stream_open(u64::MAX, &text).is_ok());
}

#[test]
fn close_leaves_and_fails_what_is_under_way() {
    let mut d = connected();
    let call = d.perform_rpc(10, "agent", "m", "", 5_000).unwrap();
    let _ = sent(&mut d);
    d.close(20);
    assert!(matches!(&sent(&mut d)[..], [Msg::Close(_)]));
    assert_eq!(d.state(), ConnectionState::Disconnected);
    let evs = events(&mut d);
    assert!(evs
        .iter()
        .any(|e| matches!(e, Event::RpcResult { call: c, outcome: Err(_) } if *c == call)));
    assert!(matches!(
        d.perform_rpc(30, "agent", "m", "", 5_000),
        Err(DeviceError::NotConnected)
    ));
    assert!(!d.wants_link(1_000_000));
}
