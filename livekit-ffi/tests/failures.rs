//! Every way a join can fail or a session can end, against a real server.

mod common;

use std::time::{Duration, Instant};

use common::{token, wait_for, Server, API_SECRET};
use livekit_ffi::{ConnectionState, FailureReason, Room, RoomEvent, RoomOptions};

const T: Duration = Duration::from_secs(15);

async fn join_error(url: &str, token: &str) -> livekit_ffi::Error {
    match Room::connect(url, token, RoomOptions::default()).await {
        Ok(_) => panic!("the join should have failed"),
        Err(e) => e,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_tokens_give_their_reasons() {
    common::init_logs();
    let server = Server::start();
    let url = server.url();

    let e = join_error(&url, "not-a-jwt").await;
    assert_eq!(e.failure_reason(), FailureReason::Unauthorized, "{e}");

    let expired = token("r", "alice", -120, API_SECRET);
    let e = join_error(&url, &expired).await;
    assert_eq!(e.failure_reason(), FailureReason::Unauthorized, "{e}");

    // Signed by a key this server does not trust (a token for another deployment).
    let foreign = token("r", "alice", 600, "another-secret-another-secret-00");
    let e = join_error(&url, &foreign).await;
    assert_eq!(e.failure_reason(), FailureReason::Unauthorized, "{e}");

    // Missing identity or room: a malformed token.
    let e = join_error(&url, &token("r", "", 600, API_SECRET)).await;
    assert_eq!(e.failure_reason(), FailureReason::BadToken, "{e}");
    let e = join_error(&url, &token("", "alice", 600, API_SECRET)).await;
    assert_eq!(e.failure_reason(), FailureReason::BadToken, "{e}");
    assert!(e.to_string().contains("400"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_another_room_joins_that_room_only() {
    common::init_logs();
    let server = Server::start();
    let (a, _rx) = server.join("room-a", "alice").await;
    let (b, _rx2) = server.join("room-b", "bob").await;
    assert_eq!(a.info().name, "room-a");
    assert_eq!(b.info().name, "room-b");
    assert!(a.remote_participants().is_empty() && b.remote_participants().is_empty());
    // Without the roomJoin grant for any room, the server refuses.
    let claims = serde_json::json!({
        "iss": common::API_KEY, "sub": "eve", "nbf": 0, "exp": 4_000_000_000u64,
        "video": {"room": "room-a", "roomJoin": false},
    });
    let e = join_error(&server.url(), &common::sign(&claims, API_SECRET)).await;
    assert_eq!(e.failure_reason(), FailureReason::Unauthorized, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_is_unreachable_at_once() {
    common::init_logs();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let e = join_error(
        &format!("ws://127.0.0.1:{port}"),
        &token("r", "a", 60, API_SECRET),
    )
    .await;
    assert_eq!(e.failure_reason(), FailureReason::Unreachable, "{e}");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );

    let e = join_error("ftp://example", "t").await;
    assert_eq!(e.failure_reason(), FailureReason::Unreachable);
    assert!(e.to_string().contains("invalid URL"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_through_room_service_is_participant_removed() {
    common::init_logs();
    let server = Server::start();
    let (alice, mut rx) = server.join("svc", "alice").await;
    server
        .room_service()
        .remove_participant("svc", "alice")
        .await
        .unwrap();
    let reason = wait_for(&mut rx, T, |e| match e {
        RoomEvent::Disconnected { reason } => Some(*reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, FailureReason::ParticipantRemoved);
    assert_eq!(alice.failure_reason(), FailureReason::ParticipantRemoved);
    assert_eq!(alice.connection_state(), ConnectionState::Disconnected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_room_is_room_deleted_for_everyone() {
    common::init_logs();
    let server = Server::start();
    let (alice, mut arx) = server.join("doomed", "alice").await;
    let (_bob, mut brx) = server.join("doomed", "bob").await;
    server.room_service().delete_room("doomed").await.unwrap();
    for rx in [&mut arx, &mut brx] {
        let reason = wait_for(rx, T, |e| match e {
            RoomEvent::Disconnected { reason } => Some(*reason),
            _ => None,
        })
        .await;
        assert_eq!(reason, FailureReason::RoomDeleted);
    }
    assert_eq!(alice.failure_reason(), FailureReason::RoomDeleted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_twice_with_one_identity_removes_the_first() {
    common::init_logs();
    let server = Server::start();
    let (first, mut rx) = server.join("dup", "alice").await;
    let (second, _rx2) = server.join("dup", "alice").await;
    let reason = wait_for(&mut rx, T, |e| match e {
        RoomEvent::Disconnected { reason } => Some(*reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, FailureReason::DuplicateIdentity);
    assert_eq!(first.failure_reason(), FailureReason::DuplicateIdentity);
    assert_eq!(second.connection_state(), ConnectionState::Connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_service_metadata_changes_raise_events() {
    common::init_logs();
    let server = Server::start();
    let (_alice, mut rx) = server.join("svcmeta", "alice").await;
    let (_bob, _brx) = server.join("svcmeta", "bob").await;
    let svc = server.room_service();
    svc.update_room_metadata("svcmeta", "room-meta")
        .await
        .unwrap();
    let new = wait_for(&mut rx, T, |e| match e {
        RoomEvent::RoomMetadataChanged { new, .. } => Some(new.clone()),
        _ => None,
    })
    .await;
    assert_eq!(new, "room-meta");
    let mut attrs = std::collections::HashMap::new();
    attrs.insert("role".to_string(), "speaker".to_string());
    svc.update_participant(
        "svcmeta",
        "bob",
        livekit_api::services::room::UpdateParticipantOptions {
            metadata: "bob-meta".into(),
            attributes: attrs,
            name: "Bobby".into(),
            permission: None,
        },
    )
    .await
    .unwrap();
    let changed = wait_for(&mut rx, T, |e| match e {
        RoomEvent::ParticipantAttributesChanged {
            identity, changed, ..
        } if identity == "bob" => Some(changed.clone()),
        _ => None,
    })
    .await;
    assert_eq!(changed.get("role").map(String::as_str), Some("speaker"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_server_ends_in_failed_max_retries() {
    common::init_logs();
    let server = Server::start();
    let mut options = RoomOptions::default();
    options.retry.max_attempts = 2;
    let (alice, mut rx) = Room::connect(&server.url(), &server.token("gone", "alice"), options)
        .await
        .unwrap();
    drop(server);
    wait_for(&mut rx, T, |e| {
        matches!(e, RoomEvent::Reconnecting).then_some(())
    })
    .await;
    let reason = wait_for(&mut rx, Duration::from_secs(30), |e| match e {
        RoomEvent::Disconnected { reason } => Some(*reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, FailureReason::MaxRetries);
    assert_eq!(alice.connection_state(), ConnectionState::Failed);
    assert_eq!(alice.failure_reason(), FailureReason::MaxRetries);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_is_rejoined_and_data_flows_again() {
    common::init_logs();
    let mut server = Server::start();
    let (alice, mut arx) = server.join("phoenix", "alice").await;
    server.restart();
    wait_for(&mut arx, T, |e| {
        matches!(e, RoomEvent::Reconnecting).then_some(())
    })
    .await;
    wait_for(&mut arx, Duration::from_secs(40), |e| {
        matches!(e, RoomEvent::Reconnected).then_some(())
    })
    .await;
    assert_eq!(alice.connection_state(), ConnectionState::Connected);
    assert_eq!(alice.failure_reason(), FailureReason::None);

    // The rejoined session works: a newcomer sees alice and gets her data.
    let (_bob, mut brx) = server.join("phoenix", "bob").await;
    wait_for(&mut arx, T, |e| match e {
        RoomEvent::ParticipantConnected(p) if p.identity == "bob" => Some(()),
        _ => None,
    })
    .await;
    alice
        .publish_data(
            livekit_ffi::UserData {
                payload: b"back".to_vec(),
                topic: None,
                destination_identities: vec![],
            },
            livekit_ffi::DataKind::Reliable,
        )
        .await
        .unwrap();
    let got = wait_for(&mut brx, T, |e| match e {
        RoomEvent::DataReceived(d) => Some(d.payload.clone()),
        _ => None,
    })
    .await;
    assert_eq!(got, b"back");
}
