//! Joining, leaving and cancelled joins leave no sockets or tasks behind.

mod common;

use std::time::Duration;

use common::Server;
use livekit_ffi::{Room, RoomOptions};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Waits for the count to come back to `baseline` (teardown is asynchronous).
async fn settles_to(baseline: usize) -> usize {
    let mut now = open_fds();
    for _ in 0..50 {
        if now <= baseline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        now = open_fds();
    }
    now
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_and_completed_joins_release_everything() {
    common::init_logs();
    let server = Server::start();
    // Warm up lazies (TLS config, DNS, runtime internals) before taking the baseline.
    let (room, _rx) = server.join("leaks", "warmup").await;
    room.disconnect().await;
    drop(room);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = open_fds();

    for i in 0..10 {
        let (room, rx) = server.join("leaks", &format!("p{i}")).await;
        room.disconnect().await;
        drop((room, rx));
    }
    // Cancel joins at every stage: before the WebSocket, during ICE, near the end.
    for i in 0..30u64 {
        let timeout = Duration::from_millis(1 + (i * 7) % 120);
        let token = server.token("leaks", &format!("c{i}"));
        let r = tokio::time::timeout(
            timeout,
            Room::connect(&server.url(), &token, RoomOptions::default()),
        )
        .await;
        if let Ok(Ok((room, _rx))) = r {
            room.disconnect().await;
        }
    }
    let after = settles_to(baseline).await;
    assert!(
        after <= baseline,
        "file descriptors leaked: {baseline} before, {after} after"
    );

    // Nobody is left in the room on the server side either.
    let mut left = usize::MAX;
    for _ in 0..50 {
        left = server
            .room_service()
            .list_participants("leaks")
            .await
            .map(|l| l.len())
            .unwrap_or(0);
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(left, 0, "participants still in the room");
}
