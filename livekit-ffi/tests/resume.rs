//! Losing the signal connection resumes the session: same participant, no leave seen
//! by others, data flowing again.

mod common;

use std::time::Duration;

use common::{wait_for, Proxy, Server};
use livekit_ffi::{ConnectionState, DataKind, Room, RoomEvent, RoomOptions, UserData};

const T: Duration = Duration::from_secs(20);

fn hello(text: &str) -> UserData {
    UserData {
        payload: text.as_bytes().to_vec(),
        topic: Some("resume".into()),
        destination_identities: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_signal_connection_is_resumed_in_place() {
    common::init_logs();
    let server = Server::start();
    let proxy = Proxy::start(server.port).await;
    let (alice, mut arx) = Room::connect(
        &proxy.url(),
        &server.token("resume", "alice"),
        RoomOptions::default(),
    )
    .await
    .unwrap();
    let (bob, mut brx) = server.join("resume", "bob").await;
    wait_for(&mut arx, T, |e| match e {
        RoomEvent::ParticipantConnected(p) if p.identity == "bob" => Some(()),
        _ => None,
    })
    .await;
    let sid = alice.local_participant().sid;

    proxy.sever();
    wait_for(&mut arx, T, |e| {
        matches!(e, RoomEvent::Reconnecting).then_some(())
    })
    .await;
    wait_for(&mut arx, T, |e| {
        matches!(e, RoomEvent::Reconnected).then_some(())
    })
    .await;
    assert_eq!(alice.connection_state(), ConnectionState::Connected);
    assert_eq!(
        alice.local_participant().sid,
        sid,
        "a resume keeps the session"
    );

    // Both directions work on the resumed session.
    alice
        .publish_data(hello("after resume"), DataKind::Reliable)
        .await
        .unwrap();
    let mut bob_saw = vec![];
    let got = wait_for(&mut brx, T, |e| {
        bob_saw.push(e.clone());
        match e {
            RoomEvent::DataReceived(d) => Some(d.payload.clone()),
            _ => None,
        }
    })
    .await;
    assert_eq!(got, b"after resume");
    assert!(
        !bob_saw.iter().any(|e| matches!(e, RoomEvent::ParticipantDisconnected { participant, .. } if participant.identity == "alice")),
        "bob must not see alice leave: {bob_saw:?}"
    );
    bob.publish_data(hello("welcome back"), DataKind::Reliable)
        .await
        .unwrap();
    let got = wait_for(&mut arx, T, |e| match e {
        RoomEvent::DataReceived(d) => Some(d.payload.clone()),
        _ => None,
    })
    .await;
    assert_eq!(got, b"welcome back");
}
