//! Joining, presence and data against a real LiveKit server.

mod common;

use std::time::Duration;

use common::{wait_for, Server};
use livekit_ffi::{ConnectionState, DataKind, FailureReason, RoomEvent, UserData};

const T: Duration = Duration::from_secs(15);

fn user(payload: Vec<u8>, topic: Option<&str>, to: &[&str]) -> UserData {
    UserData {
        payload,
        topic: topic.map(str::to_owned),
        destination_identities: to.iter().map(|s| s.to_string()).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_participants_see_each_other_join_and_leave() {
    common::init_logs();
    let server = Server::start();
    let (alice, mut alice_rx) = server.join("presence", "alice").await;
    assert_eq!(alice.connection_state(), ConnectionState::Connected);
    assert_eq!(alice.info().name, "presence");
    assert!(alice.info().sid.starts_with("RM_"));
    assert_eq!(alice.local_participant().identity, "alice");
    assert!(alice.remote_participants().is_empty());

    let (bob, _bob_rx) = server.join("presence", "bob").await;
    let alice_seen_by_bob: Vec<_> = bob
        .remote_participants()
        .into_iter()
        .map(|p| p.identity)
        .collect();
    assert_eq!(alice_seen_by_bob, vec!["alice".to_string()]);

    let joined = wait_for(&mut alice_rx, T, |e| match e {
        RoomEvent::ParticipantConnected(p) => Some(p.clone()),
        _ => None,
    })
    .await;
    assert_eq!(joined.identity, "bob");
    assert!(joined.sid.starts_with("PA_"));
    assert!(alice.remote_participant("bob").is_some());

    bob.disconnect().await;
    assert_eq!(bob.connection_state(), ConnectionState::Disconnected);
    let left = wait_for(&mut alice_rx, T, |e| match e {
        RoomEvent::ParticipantDisconnected { participant, .. } => {
            Some(participant.identity.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(left, "bob");
    assert!(alice.remote_participants().is_empty());
    alice.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_reliable_packets_arrive_complete_and_in_order() {
    common::init_logs();
    let server = Server::start();
    let (alice, _alice_rx) = server.join("bulk", "alice").await;
    let (_bob, mut bob_rx) = server.join("bulk", "bob").await;

    let sender = tokio::spawn(async move {
        for i in 0u32..1000 {
            let mut payload = vec![0u8; 1024];
            payload[..4].copy_from_slice(&i.to_be_bytes());
            alice
                .publish_data(user(payload, Some("bulk"), &[]), DataKind::Reliable)
                .await
                .unwrap();
        }
        alice
    });
    let mut next = 0u32;
    while next < 1000 {
        let d = wait_for(&mut bob_rx, T, |e| match e {
            RoomEvent::DataReceived(d) => Some(d.clone()),
            _ => None,
        })
        .await;
        assert_eq!(d.participant_identity, "alice");
        assert_eq!(d.topic.as_deref(), Some("bulk"));
        assert_eq!(d.kind, DataKind::Reliable);
        assert_eq!(d.payload.len(), 1024);
        let seq = u32::from_be_bytes(d.payload[..4].try_into().unwrap());
        assert_eq!(seq, next, "packets out of order or missing");
        next += 1;
    }
    sender.await.unwrap().disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_packets_arrive_with_topic_and_sender() {
    common::init_logs();
    let server = Server::start();
    let (alice, _a) = server.join("lossy", "alice").await;
    let (_bob, mut bob_rx) = server.join("lossy", "bob").await;
    for i in 0u8..50 {
        alice
            .publish_data(user(vec![i; 200], Some("telemetry"), &[]), DataKind::Lossy)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let d = wait_for(&mut bob_rx, T, |e| match e {
        RoomEvent::DataReceived(d) => Some(d.clone()),
        _ => None,
    })
    .await;
    assert_eq!(d.kind, DataKind::Lossy);
    assert_eq!(d.topic.as_deref(), Some("telemetry"));
    assert_eq!(d.participant_identity, "alice");
    assert_eq!(d.payload.len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_and_destinations_are_respected() {
    common::init_logs();
    let server = Server::start();
    let (alice, _a) = server.join("filter", "alice").await;
    let (_bob, mut bob_rx) = server.join("filter", "bob").await;
    let (_carol, mut carol_rx) = server.join("filter", "carol").await;

    alice
        .publish_data(
            user(b"for carol".to_vec(), Some("private"), &["carol"]),
            DataKind::Reliable,
        )
        .await
        .unwrap();
    alice
        .publish_data(
            user(b"for all".to_vec(), Some("public"), &[]),
            DataKind::Reliable,
        )
        .await
        .unwrap();

    // Carol gets both, in order, with their topics.
    let mut got = vec![];
    while got.len() < 2 {
        got.push(
            wait_for(&mut carol_rx, T, |e| match e {
                RoomEvent::DataReceived(d) => Some((d.payload.clone(), d.topic.clone())),
                _ => None,
            })
            .await,
        );
    }
    assert_eq!(got[0], (b"for carol".to_vec(), Some("private".into())));
    assert_eq!(got[1], (b"for all".to_vec(), Some("public".into())));

    // Bob's first packet is the public one: the private one never reached him.
    let first = wait_for(&mut bob_rx, T, |e| match e {
        RoomEvent::DataReceived(d) => Some(d.payload.clone()),
        _ => None,
    })
    .await;
    assert_eq!(first, b"for all".to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_packets_are_refused_and_the_room_goes_on() {
    common::init_logs();
    let server = Server::start();
    let (alice, _a) = server.join("big", "alice").await;
    let (_bob, mut bob_rx) = server.join("big", "bob").await;
    let err = alice
        .publish_data(user(vec![7; 64_001], None, &[]), DataKind::Reliable)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("over the limit"), "{err}");
    // The largest packet that fits still goes through.
    alice
        .publish_data(user(vec![7; 60_000], None, &[]), DataKind::Reliable)
        .await
        .unwrap();
    let d = wait_for(&mut bob_rx, T, |e| match e {
        RoomEvent::DataReceived(d) => Some(d.clone()),
        _ => None,
    })
    .await;
    assert_eq!(d.payload.len(), 60_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_metadata_changes_come_back_as_events() {
    common::init_logs();
    let server = Server::start();
    let (alice, mut alice_rx) = server.join("meta", "alice").await;
    let (_bob, mut bob_rx) = server.join("meta", "bob").await;
    alice
        .update_local_participant(Some("hello".into()), Some("Alice".into()), None)
        .await
        .unwrap();
    let (old, new) = wait_for(&mut alice_rx, T, |e| match e {
        RoomEvent::ParticipantMetadataChanged { identity, old, new } if identity == "alice" => {
            Some((old.clone(), new.clone()))
        }
        _ => None,
    })
    .await;
    assert_eq!((old.as_str(), new.as_str()), ("", "hello"));
    let name = wait_for(&mut bob_rx, T, |e| match e {
        RoomEvent::ParticipantNameChanged { identity, new, .. } if identity == "alice" => {
            Some(new.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(name, "Alice");
    assert_eq!(alice.local_participant().metadata, "hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_is_clean_and_bounded() {
    common::init_logs();
    let server = Server::start();
    let (alice, mut rx) = server.join("bye", "alice").await;
    let started = std::time::Instant::now();
    alice.disconnect().await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(alice.connection_state(), ConnectionState::Disconnected);
    assert_eq!(alice.failure_reason(), FailureReason::None);
    let reason = wait_for(&mut rx, T, |e| match e {
        RoomEvent::Disconnected { reason } => Some(*reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, FailureReason::None);
    // The engine task is gone: the event stream ends.
    assert!(
        tokio::time::timeout(T, async { while rx.recv().await.is_some() {} })
            .await
            .is_ok()
    );
    // Sending after leaving is an error, not a hang.
    let err = alice
        .publish_data(user(b"x".to_vec(), None, &[]), DataKind::Reliable)
        .await;
    assert!(err.is_err());
    // The server no longer lists us (it drops the session as it processes the leave).
    let mut list = vec![];
    for _ in 0..25 {
        list = server
            .room_service()
            .list_participants("bye")
            .await
            .unwrap_or_default();
        if list.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(list.is_empty(), "{list:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_without_the_grant_are_refused_by_the_server() {
    common::init_logs();
    let server = Server::start();
    let claims = serde_json::json!({
        "iss": common::API_KEY, "sub": "mallory", "nbf": 0, "exp": 4_000_000_000u64,
        "video": {"room": "perm", "roomJoin": true, "canUpdateOwnMetadata": false},
    });
    let token = common::sign(&claims, common::API_SECRET);
    let (room, _rx) =
        livekit_ffi::Room::connect(&server.url(), &token, livekit_ffi::RoomOptions::default())
            .await
            .unwrap();
    let err = room
        .update_local_participant(Some("nope".into()), None, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("NOT_ALLOWED"), "{err}");
    assert_eq!(room.local_participant().metadata, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_published_right_before_a_disconnect_still_arrives() {
    common::init_logs();
    let server = Server::start();
    let (alice, _alice_rx) = server.join("flush", "alice").await;
    let (_bob, mut bob_rx) = server.join("flush", "bob").await;
    for i in 0u32..200 {
        let payload = vec![i as u8; 8 * 1024];
        alice
            .publish_data(user(payload, Some("last"), &[]), DataKind::Reliable)
            .await
            .unwrap();
    }
    let t0 = std::time::Instant::now();
    alice.disconnect().await;
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    let mut got = 0u32;
    while got < 200 {
        let d = wait_for(&mut bob_rx, T, |e| match e {
            RoomEvent::DataReceived(d) => Some(d.clone()),
            _ => None,
        })
        .await;
        assert_eq!(d.payload[0], got as u8);
        got += 1;
    }
}
