//! Audio tracks between two rooms of this core, through a real server: a tone
//! published by one is heard by the other; mute, unpublish and unsubscribe show
//! on both sides.

mod common;

use std::time::Duration;

use common::{wait_for, Server};
use livekit_ffi::audio::{AudioSource, LocalAudioTrack, PcmFrame, RemoteAudioTrack};
use livekit_ffi::{PublishOptions, RoomEvent};
use tokio::sync::mpsc;

const T: Duration = Duration::from_secs(15);

/// Feeds a sine of `freq` Hz into `source` until the task is aborted.
fn play_tone(source: AudioSource, freq: f64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let rate = f64::from(source.sample_rate());
        let mut n = 0u64;
        loop {
            let chunk: Vec<i16> = (0..480)
                .map(|i| {
                    let t = (n + i) as f64 / rate;
                    ((2.0 * std::f64::consts::PI * freq * t).sin() * 8000.0) as i16
                })
                .collect();
            n += 480;
            if source.capture(&chunk).await.is_err() {
                return;
            }
        }
    })
}

/// Power of `freq` in mono 48 kHz samples (Goertzel), normalised by length.
fn power(samples: &[f64], freq: f64) -> f64 {
    let k = 2.0 * (2.0 * std::f64::consts::PI * freq / 48_000.0).cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for x in samples {
        let s = x + k * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - k * s1 * s2) / (samples.len() as f64).powi(2)
}

fn rms(samples: &[f64]) -> f64 {
    (samples.iter().map(|x| x * x).sum::<f64>() / samples.len().max(1) as f64).sqrt()
}

/// Collects `ms` of mono audio from a listener.
async fn record(rx: &mut mpsc::Receiver<PcmFrame>, ms: usize) -> Vec<f64> {
    let mut out = Vec::new();
    while out.len() < ms * 48 {
        let f = tokio::time::timeout(T, rx.recv())
            .await
            .expect("frames keep coming")
            .expect("track still subscribed");
        out.extend(f.samples.chunks_exact(f.channels).map(|c| f64::from(c[0])));
    }
    out
}

async fn subscribed(rx: &mut mpsc::Receiver<RoomEvent>, who: &str) -> (String, RemoteAudioTrack) {
    wait_for(rx, T, |e| match e {
        RoomEvent::TrackSubscribed {
            identity,
            sid,
            track,
        } if identity == who => Some((sid.clone(), track.clone())),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tone_is_heard_muted_unsubscribed_and_unpublished() {
    common::init_logs();
    let server = Server::start();
    let (alice, mut alice_rx) = server.join("audio", "alice").await;
    let (bob, mut bob_rx) = server.join("audio", "bob").await;

    let source = AudioSource::new(48_000, 1, 100).unwrap();
    let track = LocalAudioTrack::new("tone", source.clone());
    let tone = play_tone(source, 440.0);
    let info = alice
        .publish_audio(&track, PublishOptions::default())
        .await
        .expect("published");
    assert!(info.sid.starts_with("TR_"), "{info:?}");
    assert_eq!(alice.local_tracks().len(), 1);
    wait_for(&mut alice_rx, T, |e| {
        matches!(e, RoomEvent::LocalTrackPublished(t) if t.sid == info.sid).then_some(())
    })
    .await;

    let published = wait_for(&mut bob_rx, T, |e| match e {
        RoomEvent::TrackPublished { identity, track } if identity == "alice" => Some(track.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        (published.sid.as_str(), published.name.as_str()),
        (info.sid.as_str(), "tone")
    );
    let (sid, remote) = subscribed(&mut bob_rx, "alice").await;
    assert_eq!(sid, info.sid);
    wait_for(&mut alice_rx, T, |e| {
        matches!(e, RoomEvent::LocalTrackSubscribed { sid } if *sid == info.sid).then_some(())
    })
    .await;

    // The tone makes Alice an active speaker, for both.
    wait_for(&mut bob_rx, T, |e| match e {
        RoomEvent::ActiveSpeakersChanged { identities } if identities == &["alice"] => Some(()),
        _ => None,
    })
    .await;
    assert_eq!(bob.active_speakers(), ["alice"]);

    let mut frames = remote.listen();
    // Let the decoder settle, then listen.
    record(&mut frames, 300).await;
    let heard = record(&mut frames, 1000).await;
    let (at_440, at_1000) = (power(&heard, 440.0), power(&heard, 1000.0));
    assert!(
        at_440 > 100.0 * at_1000,
        "440 Hz {at_440} vs 1 kHz {at_1000}"
    );
    let level = rms(&heard);
    // Sent at 8000 peak, 5657 RMS; Opus keeps the level within a few dB.
    assert!((3000.0..9000.0).contains(&level), "level {level}");

    // Mute: both sides see it, and the audio falls silent.
    assert!(alice.set_track_muted(&info.sid, true).await.unwrap());
    wait_for(&mut alice_rx, T, |e| {
        matches!(e, RoomEvent::TrackMuted { identity, muted: true, .. } if identity == "alice")
            .then_some(())
    })
    .await;
    wait_for(&mut bob_rx, T, |e| {
        matches!(e, RoomEvent::TrackMuted { sid, muted: true, .. } if *sid == info.sid)
            .then_some(())
    })
    .await;
    record(&mut frames, 300).await;
    let quiet = record(&mut frames, 500).await;
    assert!(rms(&quiet) < 100.0, "muted level {}", rms(&quiet));
    assert!(alice.set_track_muted(&info.sid, false).await.unwrap());
    wait_for(&mut bob_rx, T, |e| {
        matches!(e, RoomEvent::TrackMuted { sid, muted: false, .. } if *sid == info.sid)
            .then_some(())
    })
    .await;
    record(&mut frames, 300).await;
    assert!(rms(&record(&mut frames, 500).await) > 3000.0, "unmuted");

    // Unsubscribe: the track ends for Bob, and comes back when he subscribes again.
    bob.set_subscribed(&info.sid, false).await.unwrap();
    wait_for(&mut bob_rx, T, |e| {
        matches!(e, RoomEvent::TrackUnsubscribed { sid, .. } if *sid == info.sid).then_some(())
    })
    .await;
    let ended = tokio::time::timeout(T, async { while frames.recv().await.is_some() {} }).await;
    assert!(ended.is_ok(), "frames stop after unsubscribing");
    bob.set_subscribed(&info.sid, true).await.unwrap();
    let (_, remote) = subscribed(&mut bob_rx, "alice").await;
    let mut frames = remote.listen();
    record(&mut frames, 300).await;
    let again = record(&mut frames, 500).await;
    assert!(
        power(&again, 440.0) > 100.0 * power(&again, 1000.0),
        "heard again"
    );

    // Unpublish: Alice sees it at once, Bob sees the unsubscription, then the unpublication.
    assert!(alice.unpublish_track(&info.sid).await.unwrap());
    wait_for(&mut alice_rx, T, |e| {
        matches!(e, RoomEvent::LocalTrackUnpublished { sid } if *sid == info.sid).then_some(())
    })
    .await;
    let mut order = vec![];
    wait_for(&mut bob_rx, T, |e| match e {
        RoomEvent::TrackUnsubscribed { sid, .. } if *sid == info.sid => {
            order.push("unsubscribed");
            None
        }
        RoomEvent::TrackUnpublished { sid, .. } if *sid == info.sid => {
            order.push("unpublished");
            Some(())
        }
        _ => None,
    })
    .await;
    assert_eq!(order, ["unsubscribed", "unpublished"]);
    assert!(alice.local_tracks().is_empty());
    assert!(!alice.unpublish_track(&info.sid).await.unwrap());
    tone.abort();
    alice.disconnect().await;
    bob.disconnect().await;
}

/// A resume (the signal connection lost, the session kept) does not interrupt the
/// audio; a full rejoin (the server restarted) publishes the track again, and a
/// newcomer hears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_survives_a_resume_and_a_rejoin() {
    common::init_logs();
    let mut server = Server::start();
    let proxy = common::Proxy::start(server.port).await;
    let (alice, mut alice_rx) = livekit_ffi::Room::connect(
        &proxy.url(),
        &server.token("audio-resume", "alice"),
        livekit_ffi::RoomOptions::default(),
    )
    .await
    .unwrap();
    let (bob, mut bob_rx) = server.join("audio-resume", "bob").await;
    let source = AudioSource::new(48_000, 1, 100).unwrap();
    let track = LocalAudioTrack::new("tone", source.clone());
    let tone = play_tone(source, 440.0);
    let info = alice
        .publish_audio(&track, PublishOptions::default())
        .await
        .expect("published");
    let (_, remote) = subscribed(&mut bob_rx, "alice").await;
    let mut frames = remote.listen();
    record(&mut frames, 300).await;

    let session = alice.local_participant().sid;
    proxy.sever();
    wait_for(&mut alice_rx, T, |e| {
        matches!(e, RoomEvent::Reconnected).then_some(())
    })
    .await;
    assert_eq!(
        alice.local_participant().sid,
        session,
        "resumed, not rejoined"
    );
    assert_eq!(
        alice.local_tracks()[0].sid,
        info.sid,
        "a resume keeps the track"
    );
    // Bob's subscription was never interrupted, and the tone goes on.
    let after = record(&mut frames, 1000).await;
    assert!(power(&after, 440.0) > 100.0 * power(&after, 1000.0));
    assert!(rms(&after) > 3000.0, "level {}", rms(&after));
    bob.disconnect().await;
    drop(bob_rx);

    server.restart();
    wait_for(&mut alice_rx, Duration::from_secs(40), |e| {
        matches!(e, RoomEvent::Reconnected).then_some(())
    })
    .await;
    let (_carol, mut carol_rx) = server.join("audio-resume", "carol").await;
    let (sid, remote) = subscribed(&mut carol_rx, "alice").await;
    let tracks = alice.local_tracks();
    assert_eq!(tracks.len(), 1, "{tracks:?}");
    assert_eq!(
        tracks[0].sid, sid,
        "the track as the new session published it"
    );
    let mut frames = remote.listen();
    record(&mut frames, 300).await;
    let heard = record(&mut frames, 1000).await;
    assert!(power(&heard, 440.0) > 100.0 * power(&heard, 1000.0));
    tone.abort();
    alice.disconnect().await;
}

/// A stereo source goes out as stereo Opus and comes back as two channels, each
/// with its own tone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stereo_keeps_its_two_channels() {
    common::init_logs();
    let server = Server::start();
    let (alice, _alice_rx) = server.join("audio-stereo", "alice").await;
    let (_bob, mut bob_rx) = server.join("audio-stereo", "bob").await;
    let source = AudioSource::new(48_000, 2, 100).unwrap();
    let track = LocalAudioTrack::new("stereo", source.clone());
    let player = tokio::spawn(async move {
        let mut n = 0u64;
        loop {
            let chunk: Vec<i16> = (0..480)
                .flat_map(|i| {
                    let t = (n + i) as f64 / 48_000.0;
                    let tone =
                        |f: f64| ((2.0 * std::f64::consts::PI * f * t).sin() * 8000.0) as i16;
                    [tone(440.0), tone(1000.0)]
                })
                .collect();
            n += 480;
            if source.capture(&chunk).await.is_err() {
                return;
            }
        }
    });
    let info = alice
        .publish_audio(&track, PublishOptions::default())
        .await
        .unwrap();
    assert!(info
        .audio_features
        .contains(&(livekit_ffi::proto::AudioTrackFeature::TfStereo as i32)));
    let (_, remote) = subscribed(&mut bob_rx, "alice").await;
    let mut frames = remote.listen();
    let (mut left, mut right) = (vec![], vec![]);
    let mut skip = 30;
    while left.len() < 48_000 {
        let f = tokio::time::timeout(T, frames.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(f.channels, 2, "stereo frames");
        if skip > 0 {
            skip -= 1;
            continue;
        }
        for c in f.samples.chunks_exact(2) {
            left.push(f64::from(c[0]));
            right.push(f64::from(c[1]));
        }
    }
    assert!(
        power(&left, 440.0) > 30.0 * power(&left, 1000.0),
        "left is 440 Hz"
    );
    assert!(
        power(&right, 1000.0) > 30.0 * power(&right, 440.0),
        "right is 1 kHz"
    );
    player.abort();
}
