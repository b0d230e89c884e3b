//! RPC and data streams between two rooms of this core, through a real server.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{wait_for, Server};
use livekit_ffi::{
    PerformRpc, RoomEvent, RpcError, RpcErrorCode, StreamError, StreamKind, StreamOptions,
};

const T: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_calls_are_answered_refused_and_timed_out() {
    common::init_logs();
    let server = Server::start();
    let (alice, _alice_rx) = server.join("rpc", "alice").await;
    let (bob, mut bob_rx) = server.join("rpc", "bob").await;
    bob.register_rpc_method("greet");
    bob.register_rpc_method("slow");

    // Bob answers every invocation as it comes: greet politely, slow never.
    let answering = {
        let bob = bob.clone();
        tokio::spawn(async move {
            while let Some(ev) = bob_rx.recv().await {
                if let RoomEvent::RpcInvocation(i) = ev {
                    if i.method == "greet" {
                        assert_eq!(i.caller, "alice");
                        assert!(i.response_timeout_ms >= 1000);
                        let answer = if i.payload == "fail" {
                            Err(RpcError {
                                code: 4242,
                                message: "custom".into(),
                                data: "details".into(),
                            })
                        } else {
                            Ok(format!("hello {}", i.payload))
                        };
                        assert!(bob.respond_rpc(i.id, answer));
                    }
                }
            }
        })
    };

    let ok = alice
        .perform_rpc(PerformRpc::new("bob", "greet", "alice"))
        .await;
    assert_eq!(ok, Ok("hello alice".to_string()));

    let custom = alice
        .perform_rpc(PerformRpc::new("bob", "greet", "fail"))
        .await
        .unwrap_err();
    assert_eq!((custom.code, custom.data.as_str()), (4242, "details"));

    let unknown = alice
        .perform_rpc(PerformRpc::new("bob", "nope", ""))
        .await
        .unwrap_err();
    assert_eq!(unknown.code, RpcErrorCode::UnsupportedMethod as u32);

    let big = "x".repeat(livekit_ffi::MAX_RPC_PAYLOAD_BYTES + 1);
    let too_big = alice
        .perform_rpc(PerformRpc::new("bob", "greet", &big))
        .await
        .unwrap_err();
    assert_eq!(too_big.code, RpcErrorCode::RequestPayloadTooLarge as u32);

    let mut slow = PerformRpc::new("bob", "slow", "");
    slow.response_timeout = Duration::from_millis(1500);
    let timed_out = alice.perform_rpc(slow).await.unwrap_err();
    assert_eq!(timed_out.code, RpcErrorCode::ResponseTimeout as u32);

    let mut nobody = PerformRpc::new("nobody", "greet", "");
    nobody.max_round_trip_latency = Duration::from_millis(800);
    let no_ack = alice.perform_rpc(nobody).await.unwrap_err();
    assert_eq!(no_ack.code, RpcErrorCode::ConnectionTimeout as u32);

    // A call pending when its recipient leaves ends at once.
    let pending = {
        let alice = alice.clone();
        tokio::spawn(async move {
            let mut call = PerformRpc::new("bob", "slow", "");
            call.response_timeout = Duration::from_secs(30);
            alice.perform_rpc(call).await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    bob.disconnect().await;
    let left = tokio::time::timeout(T, pending).await.unwrap().unwrap();
    assert_eq!(
        left.unwrap_err().code,
        RpcErrorCode::RecipientDisconnected as u32
    );
    answering.abort();
    alice.disconnect().await;
}

/// Reads stream events until the stream ends; returns its bytes or its error.
async fn read_stream(
    rx: &mut tokio::sync::mpsc::Receiver<RoomEvent>,
    id: &str,
) -> Result<Vec<u8>, StreamError> {
    let mut data = Vec::new();
    loop {
        let ev = tokio::time::timeout(T, rx.recv())
            .await
            .expect("stream events in time")
            .expect("room open");
        match ev {
            RoomEvent::StreamChunk { id: i, content } if i == id => data.extend(content),
            RoomEvent::StreamClosed { id: i, .. } if i == id => return Ok(data),
            RoomEvent::StreamFailed { id: i, error } if i == id => return Err(error),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_arrive_whole_and_a_sender_leaving_fails_them() {
    common::init_logs();
    let server = Server::start();
    let (alice, _alice_rx) = server.join("streams", "alice").await;
    let (bob, mut bob_rx) = server.join("streams", "bob").await;

    // A megabyte of text with characters of every width, in uneven writes.
    let text: String = (0..300_000).map(|i| ['a', 'ß', '€', '🦀'][i % 4]).collect();
    let mut options = StreamOptions::text("chat");
    options.attributes = HashMap::from([("k".to_string(), "v".to_string())]);
    let writer = alice.stream_open(options).await.unwrap();
    let id = writer.id().to_string();
    let mut rest = text.as_str();
    let mut step = 1;
    while !rest.is_empty() {
        let mut cut = (step * 7919).min(rest.len());
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        writer.write(&rest.as_bytes()[..cut]).await.unwrap();
        rest = &rest[cut..];
        step += 1;
    }
    writer.close("", HashMap::new()).await.unwrap();

    let (kind, header) = wait_for(&mut bob_rx, T, |e| match e {
        RoomEvent::StreamOpened {
            sender,
            kind,
            header,
        } if sender == "alice" => Some((*kind, header.clone())),
        _ => None,
    })
    .await;
    assert_eq!(kind, StreamKind::Text);
    assert_eq!(
        (header.stream_id.as_str(), header.topic.as_str()),
        (id.as_str(), "chat")
    );
    assert_eq!(header.attributes.get("k").map(String::as_str), Some("v"));
    let got = read_stream(&mut bob_rx, &id).await.unwrap();
    assert_eq!(got, text.as_bytes());

    // Bytes, sent in one call with their length announced.
    let blob: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
    let sent = alice
        .stream_send(&blob, StreamOptions::bytes("files", "blob.bin"))
        .await
        .unwrap();
    assert_eq!(sent.total_length, Some(blob.len() as u64));
    let got = read_stream(&mut bob_rx, &sent.stream_id).await.unwrap();
    assert_eq!(got, blob);

    // A stream whose sender leaves before its trailer fails at the reader.
    let writer = alice
        .stream_open(StreamOptions::bytes("files", "cut.bin"))
        .await
        .unwrap();
    writer.write(&[1, 2, 3]).await.unwrap();
    let id = writer.id().to_string();
    std::mem::forget(writer);
    alice.disconnect().await;
    let error = read_stream(&mut bob_rx, &id).await.unwrap_err();
    assert!(matches!(error, StreamError::SenderLeft { .. }), "{error:?}");
    bob.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_bounds_refuse_clearly() {
    common::init_logs();
    let server = Server::start();
    let (alice, _rx) = server.join("bounds", "alice").await;
    let mut writers = Vec::new();
    for i in 0..livekit_ffi::DEFAULT_MAX_STREAMS {
        let w = alice
            .stream_open(StreamOptions::bytes("t", &format!("{i}")))
            .await
            .unwrap();
        writers.push(w);
    }
    let refused = alice.stream_open(StreamOptions::text("t")).await;
    assert!(
        matches!(
            refused,
            Err(livekit_ffi::Error::Stream(StreamError::TooManyStreams {
                limit: 4
            }))
        ),
        "{refused:?}"
    );
    let w = writers.pop().unwrap();
    w.close("", HashMap::new()).await.unwrap();
    alice
        .stream_open(StreamOptions::text("t"))
        .await
        .unwrap()
        .close("", HashMap::new())
        .await
        .unwrap();
    // A text stream takes only UTF-8.
    drop(writers);
    let t = alice.stream_open(StreamOptions::text("t2")).await.unwrap();
    assert!(matches!(
        t.write(&[0xff, 0xfe]).await,
        Err(livekit_ffi::Error::Stream(StreamError::InvalidUtf8 { .. }))
    ));
    alice.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_messages_are_sent_edited_and_received() {
    common::init_logs();
    let server = Server::start();
    let (alice, _alice_rx) = server.join("chat", "alice").await;
    let (bob, mut bob_rx) = server.join("chat", "bob").await;
    let sent = alice.send_chat_message("hi bob", vec![]).await.unwrap();
    assert!(!sent.id.is_empty() && sent.timestamp > 0);
    let got = wait_for(&mut bob_rx, T, |e| match e {
        RoomEvent::ChatMessage { sender, message } if sender == "alice" => Some(message.clone()),
        _ => None,
    })
    .await;
    assert_eq!(got, sent);
    let edited = alice
        .edit_chat_message("hi Bob!", sent.clone(), vec!["bob".into()])
        .await
        .unwrap();
    let got = wait_for(&mut bob_rx, T, |e| match e {
        RoomEvent::ChatMessage { message, .. } => Some(message.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        (got.id.as_str(), got.message.as_str()),
        (sent.id.as_str(), "hi Bob!")
    );
    assert_eq!(got.edit_timestamp, edited.edit_timestamp);
    assert!(got.edit_timestamp.is_some());
    alice.disconnect().await;
    bob.disconnect().await;
}

/// The ESP32 SDK's stream semantics from Rust: a per-topic handler sees open, each
/// chunk with its index, and close with the trailer's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_handlers_see_open_chunks_and_close_with_the_reason() {
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Log(Mutex<Vec<String>>);
    impl livekit_ffi::StreamHandler for Log {
        fn on_open(&self, sender: &str, header: &livekit_ffi::StreamHeader) {
            self.0.lock().unwrap().push(format!(
                "open {} {sender} {}",
                header.stream_id, header.topic
            ));
        }
        fn on_chunk(&self, stream_id: &str, index: u64, content: &[u8]) {
            self.0
                .lock()
                .unwrap()
                .push(format!("chunk {stream_id} {index} {}", content.len()));
        }
        fn on_close(
            &self,
            stream_id: &str,
            reason: &str,
            _attributes: &std::collections::BTreeMap<String, String>,
        ) {
            self.0
                .lock()
                .unwrap()
                .push(format!("close {stream_id} {reason:?}"));
        }
    }

    common::init_logs();
    let server = Server::start();
    let (alice, _alice_rx) = server.join("topics", "alice").await;
    let (bob, mut bob_rx) = server.join("topics", "bob").await;
    let log = Arc::new(Log::default());
    bob.register_stream_handler("sensor", log.clone());

    let mut a = StreamOptions::bytes("sensor", "a");
    a.id = Some("A".into());
    let mut b = StreamOptions::text("sensor");
    b.id = Some("B".into());
    let wa = alice.stream_open(a).await.unwrap();
    let wb = alice.stream_open(b).await.unwrap();
    wa.write(&vec![7u8; 20_000]).await.unwrap();
    wb.write("ok".as_bytes()).await.unwrap();
    wb.close("", HashMap::new()).await.unwrap();
    wa.close("sensor unplugged", HashMap::new()).await.unwrap();
    // Another topic is still a room event.
    alice
        .stream_send(b"x", StreamOptions::bytes("other", "x"))
        .await
        .unwrap();
    wait_for(&mut bob_rx, T, |e| match e {
        RoomEvent::StreamOpened { header, .. } if header.topic == "other" => Some(()),
        RoomEvent::StreamOpened { header, .. } => panic!("handled topic as event: {header:?}"),
        _ => None,
    })
    .await;
    let seen = log.0.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            "open A alice sensor",
            "open B alice sensor",
            "chunk A 0 15000",
            "chunk A 1 5000",
            "chunk B 0 2",
            "close B \"\"",
            "close A \"sensor unplugged\"",
        ]
    );
    alice.disconnect().await;
    bob.disconnect().await;
}
