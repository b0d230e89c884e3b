//! Arbitrary bytes as received data channel messages: the core's receive side
//! (decoding, the duplicate filter, senders, RPC and data streams of a joined
//! room) and `livekit-core`'s RPC and stream state machines, which must never
//! panic, and keep their promises: an RPC call ends once, an invocation is
//! answered once, chunks come in order, no more streams than the limit are open.
//!
//! The input is taken whole as one message, on the reliable and on the lossy
//! channel; when it is a sequence of framed messages (`livekit_fuzz::frame_packets`),
//! the sequence is fed as well, in order, to one receiver.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use libfuzzer_sys::fuzz_target;
use livekit_core::packet::{data_packet::Value, DataPacket};
use livekit_core::rpc::{Call, RpcClient, RpcServer};
use livekit_core::stream::{self, Event, DEFAULT_MAX_STREAMS};
use livekit_ffi::fuzzing::{REMOTE_IDENTITIES, RPC_METHOD};
use prost::Message;

/// The calls in flight when the packets arrive: `req-1` to alice, `req-2` to bob.
fn calls(client: &mut RpcClient, now: u64) {
    for (i, destination) in REMOTE_IDENTITIES.iter().enumerate() {
        let call = Call {
            destination: (*destination).to_owned(),
            method: RPC_METHOD.to_owned(),
            payload: "ping".to_owned(),
            response_timeout_ms: 15_000,
            max_round_trip_ms: 7_000,
        };
        let out = client.perform(now, i as u64 + 1, format!("req-{}", i + 1), call);
        assert!(out.is_ok());
    }
}

fn core_session(packets: &[(bool, &[u8])]) {
    let mut streams = stream::Receiver::new(DEFAULT_MAX_STREAMS);
    let mut server = RpcServer::new();
    server.register(RPC_METHOD);
    let mut client = RpcClient::new();
    let mut now = 1_000u64;
    calls(&mut client, now);
    let mut ended = BTreeSet::new();
    let mut next_chunk: BTreeMap<String, u64> = BTreeMap::new();
    for (_, bytes) in packets {
        now += 5;
        let Ok(p) = DataPacket::decode(*bytes) else {
            continue;
        };
        let sender = p.participant_identity;
        let Some(value) = p.value else {
            continue;
        };
        match value {
            Value::RpcRequest(r) => {
                let (out, invocation) = server.on_request(&sender, &r);
                assert!(
                    matches!(
                        out.first().and_then(|o| o.packet.value.as_ref()),
                        Some(Value::RpcAck(_))
                    ),
                    "a request is acked first"
                );
                assert!(out.iter().all(|o| o.destination == sender));
                if let Some(inv) = invocation {
                    assert!(server.respond(inv.id, Ok(inv.payload.clone())).is_some());
                    assert!(server.respond(inv.id, Ok(String::new())).is_none());
                }
            }
            v @ (Value::RpcAck(_) | Value::RpcResponse(_)) => {
                if let Some((call, _)) = client.on_packet(now, &sender, &v) {
                    assert!(ended.insert(call), "call {call} ended twice");
                }
            }
            v @ (Value::StreamHeader(_) | Value::StreamChunk(_) | Value::StreamTrailer(_)) => {
                match streams.on_packet(&sender, v) {
                    Some(Event::Opened { header, .. }) => {
                        next_chunk.insert(header.stream_id, 0);
                    }
                    Some(Event::Chunk { id, index, .. }) => {
                        let next = next_chunk.get_mut(&id).expect("a chunk of an open stream");
                        assert_eq!(*next, index, "chunks in order");
                        *next += 1;
                    }
                    Some(Event::Closed { id, .. } | Event::Failed { id, .. }) => {
                        assert!(next_chunk.remove(&id).is_some(), "an open stream ends");
                    }
                    Some(Event::Refused { .. }) | None => {}
                }
                assert!(streams.open_streams() <= DEFAULT_MAX_STREAMS);
            }
            _ => {}
        }
    }
    for (call, _) in client.poll_timeouts(now + 60_000) {
        assert!(ended.insert(call), "call {call} ended twice");
    }
    assert_eq!(client.in_flight(), 0);
    for e in streams.close() {
        assert!(matches!(e, Event::Failed { .. }));
    }
}

fn run(packets: &[(bool, &[u8])]) {
    livekit_ffi::fuzzing::data_packets(packets);
    core_session(packets);
}

fuzz_target!(|data: &[u8]| {
    run(&[(false, data), (true, data)]);
    if let Some(framed) = livekit_fuzz::unframe_packets(data) {
        run(&framed);
    }
});
