//! Joins a room, prints every event, and sends a reliable "hello" on the `chat` topic.
//!
//! Usage: basic_room [URL] [ROOM] [IDENTITY]
//! With LIVEKIT_TOKEN set, that token is used as is; otherwise one is minted from
//! LIVEKIT_API_KEY / LIVEKIT_API_SECRET (defaults: devkey / secret).
//! Stops after LIVEKIT_RUN_SECS seconds (default: until Ctrl-C).

use std::time::Duration;

use livekit_api::access_token::{AccessToken, VideoGrants};
use livekit_ffi::{DataKind, Room, RoomEvent, RoomOptions, UserData};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::init();
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .or_else(|| std::env::var("LIVEKIT_URL").ok())
        .unwrap_or_else(|| "ws://127.0.0.1:7880".into());
    let room_name = args.next().unwrap_or_else(|| "example".into());
    let identity = args.next().unwrap_or_else(|| "rust-example".into());
    let token = match std::env::var("LIVEKIT_TOKEN") {
        Ok(t) => t,
        Err(_) => {
            let key = std::env::var("LIVEKIT_API_KEY").unwrap_or_else(|_| "devkey".into());
            let secret = std::env::var("LIVEKIT_API_SECRET").unwrap_or_else(|_| "secret".into());
            AccessToken::with_api_key(&key, &secret)
                .with_identity(&identity)
                .with_grants(VideoGrants {
                    room_join: true,
                    room: room_name.clone(),
                    ..Default::default()
                })
                .to_jwt()?
        }
    };
    let run_for = std::env::var("LIVEKIT_RUN_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok());

    let (room, mut events) = Room::connect(&url, &token, RoomOptions::default()).await?;
    let info = room.info();
    println!(
        "joined room {:?} ({}) as {}",
        info.name,
        info.sid,
        room.local_participant().identity
    );
    for p in room.remote_participants() {
        println!("already here: {} ({})", p.identity, p.sid);
    }
    room.publish_data(
        UserData {
            payload: b"hello from rust".to_vec(),
            topic: Some("chat".into()),
            destination_identities: vec![],
        },
        DataKind::Reliable,
    )
    .await?;

    let stop = async {
        match run_for {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            ev = events.recv() => match ev {
                Some(RoomEvent::DataReceived(d)) => println!(
                    "data from {} on {:?}: {}",
                    d.participant_identity,
                    d.topic,
                    String::from_utf8_lossy(&d.payload)
                ),
                Some(RoomEvent::Disconnected { reason }) => {
                    println!("disconnected: {reason}");
                    return Ok(());
                }
                Some(ev) => println!("{ev:?}"),
                None => return Ok(()),
            },
        }
    }
    room.disconnect().await;
    println!("left the room");
    Ok(())
}
