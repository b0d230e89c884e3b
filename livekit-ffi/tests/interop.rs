//! Interop with the official Python SDK (PyPI `livekit` 1.2.1, its own virtualenv),
//! driven as a subprocess peer in the same room on the same real server.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::{wait_for, Server};
use livekit_ffi::{DataKind, RoomEvent, UserData};
use tokio::io::{AsyncBufReadExt, BufReader};

fn official_python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new("bash")
        .arg(root.join("scripts/official-sdk.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/official-sdk.sh");
    assert!(out.status.success(), "could not install the official SDK");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_flows_both_ways_with_the_official_sdk() {
    common::init_logs();
    let python = official_python();
    let server = Server::start();
    let (room, mut rx) = server.join("interop", "ours").await;

    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/interop/official_peer.py");
    let mut child = tokio::process::Command::new(python)
        .arg(script)
        .arg(server.url())
        .arg(server.token("interop", "official"))
        .arg("ours")
        .args(["--send-reliable", "5", "--send-lossy", "20"])
        .args([
            "--expect-reliable",
            "5",
            "--expect-lossy",
            "1",
            "--timeout",
            "30",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start the official peer");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();

    // Packets from the official peer may come first: keep them for later.
    let mut early = vec![];
    wait_for(&mut rx, Duration::from_secs(30), |e| match e {
        RoomEvent::ParticipantConnected(p) if p.identity == "official" => Some(()),
        RoomEvent::DataReceived(d) => {
            early.push(d.clone());
            None
        }
        _ => None,
    })
    .await;

    // Ours to theirs: reliable in order, and lossy (some may be dropped; send plenty).
    for i in 0..5 {
        room.publish_data(
            UserData {
                payload: format!("ours-reliable-{i}").into_bytes(),
                topic: Some("from-ours".into()),
                destination_identities: vec![],
            },
            DataKind::Reliable,
        )
        .await
        .unwrap();
    }
    for i in 0..20 {
        room.publish_data(
            UserData {
                payload: format!("ours-lossy-{i}").into_bytes(),
                topic: Some("from-ours-lossy".into()),
                destination_identities: vec![],
            },
            DataKind::Lossy,
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Theirs to ours.
    let mut reliable = vec![];
    let mut lossy = 0;
    let mut early = early.into_iter();
    while reliable.len() < 5 || lossy == 0 {
        let d = match early.next() {
            Some(d) => d,
            None => {
                wait_for(&mut rx, Duration::from_secs(30), |e| match e {
                    RoomEvent::DataReceived(d) => Some(d.clone()),
                    _ => None,
                })
                .await
            }
        };
        assert_eq!(d.participant_identity, "official");
        match d.kind {
            DataKind::Reliable => {
                assert_eq!(d.topic.as_deref(), Some("from-official"));
                reliable.push(String::from_utf8(d.payload).unwrap());
            }
            DataKind::Lossy => {
                assert_eq!(d.topic.as_deref(), Some("from-official-lossy"));
                lossy += 1;
            }
        }
    }
    let expected: Vec<String> = (0..5).map(|i| format!("official-reliable-{i}")).collect();
    assert_eq!(reliable, expected);

    // What the official peer saw of ours.
    let mut seen_reliable = vec![];
    let mut seen_lossy = 0;
    let mut finished = false;
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_secs(40), lines.next_line()).await
    {
        let v: serde_json::Value = serde_json::from_str(&line).expect("peer prints JSON lines");
        match v["event"].as_str() {
            Some("data") => {
                assert_eq!(v["sender"], "ours", "{v}");
                if v["kind"] == "reliable" {
                    assert_eq!(v["topic"], "from-ours");
                    seen_reliable.push(v["payload"].as_str().unwrap().to_owned());
                } else {
                    assert_eq!(v["topic"], "from-ours-lossy");
                    seen_lossy += 1;
                }
            }
            Some("done") => {
                finished = true;
                break;
            }
            Some("timeout") => panic!("the official peer timed out: {v}"),
            _ => {}
        }
    }
    assert!(finished, "the official peer did not finish");
    let expected: Vec<String> = (0..5).map(|i| format!("ours-reliable-{i}")).collect();
    assert_eq!(seen_reliable, expected);
    assert!(seen_lossy >= 1);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    room.disconnect().await;
}

/// Builds the cdylib of these very sources (`cargo test` builds the rlib only)
/// and returns its path.
fn our_cdylib() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = std::process::Command::new(cargo)
        .args(["build", "-q", "-p", "livekit-ffi", "--lib"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build");
    assert!(built.success(), "could not build the cdylib");
    // Tests run from <target>/debug/deps; the cdylib sits in <target>/debug.
    let exe = std::env::current_exe().unwrap();
    let lib = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("liblivekit_ffi.so");
    assert!(lib.exists(), "{} was not built", lib.display());
    lib
}

/// The official Python SDK, unchanged, loads our core through its C ABI
/// (`LIVEKIT_LIB_PATH`) and exchanges data with the official SDK on its own core.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_sdk_runs_on_our_core() {
    common::init_logs();
    let python = official_python();
    let lib = our_cdylib();
    let server = Server::start();
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/interop/official_peer.py");
    let spawn = |identity: &str, peer: &str, ours: bool| {
        let mut cmd = tokio::process::Command::new(&python);
        cmd.arg(&script)
            .arg(server.url())
            .arg(server.token("dropin", identity))
            .arg(peer)
            .args([
                "--send-reliable",
                "3",
                "--expect-reliable",
                "3",
                "--timeout",
                "30",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if ours {
            cmd.env("LIVEKIT_LIB_PATH", &lib);
        }
        cmd.spawn().expect("start an official peer")
    };
    let on_ours = spawn("on-ours", "on-theirs", true);
    let on_theirs = spawn("on-theirs", "on-ours", false);
    for (child, me, peer) in [
        (on_ours, "on-ours", "on-theirs"),
        (on_theirs, "on-theirs", "on-ours"),
    ] {
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("the peer finishes")
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{me} failed:\n{text}");
        let payloads: Vec<String> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["event"] == "data")
            .map(|v| {
                assert_eq!(v["topic"], "from-official", "{v}");
                v["payload"].as_str().unwrap().to_owned()
            })
            .collect();
        let expected: Vec<String> = (0..3).map(|i| format!("official-reliable-{i}")).collect();
        assert_eq!(payloads, expected, "{me} got the wrong packets from {peer}");
    }
}

/// RPC (answers and errors) and data streams (a multi-byte text and a file, read
/// whole and piece by piece) between the official Python SDK on our core and on
/// its own, each way round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_and_streams_between_our_core_and_the_official_one() {
    common::init_logs();
    let python = official_python();
    let lib = our_cdylib();
    let server = Server::start();
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/interop/official_rpc_streams.py");
    for (room, callee_on_ours) in [("rs-a", true), ("rs-b", false)] {
        let spawn = |role: &str, peer: &str, ours: bool| {
            let mut cmd = tokio::process::Command::new(&python);
            cmd.arg(&script)
                .arg(server.url())
                .arg(server.token(room, role))
                .arg(role)
                .arg(peer)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true);
            if ours {
                cmd.env("LIVEKIT_LIB_PATH", &lib);
            }
            cmd.spawn().expect("start an official peer")
        };
        let callee = spawn("callee", "caller", callee_on_ours);
        let caller = spawn("caller", "callee", !callee_on_ours);
        let mut results = vec![];
        for child in [callee, caller] {
            let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
                .await
                .expect("the peer finishes")
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(out.status.success(), "peer failed:\n{text}");
            let last = text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .next_back()
                .unwrap_or_default();
            results.push(last);
        }
        let (callee, caller) = (&results[0], &results[1]);
        let ctx = format!("callee on ours: {callee_on_ours}\ncallee: {callee}\ncaller: {caller}");
        assert_eq!(caller["echo"], "olleh", "{ctx}");
        assert_eq!(callee["echo_caller"], "caller", "{ctx}");
        assert_eq!(
            caller["boom"],
            serde_json::json!([4001, "custom", "data!"]),
            "{ctx}"
        );
        assert_eq!(caller["nope"][0], 1400, "{ctx}");
        assert_eq!(callee["text"], caller["text"], "{ctx}");
        assert_eq!(callee["bytes"], caller["bytes"], "{ctx}");
        assert_eq!(
            callee["text_info"],
            serde_json::json!(["caller", "t", 1_330_000, {"a": "1"}]),
            "{ctx}"
        );
        assert_eq!(callee["bytes_info"][1], caller["file_info"][0], "{ctx}");
        assert_eq!(callee["bytes_info"][2], 3_000_000, "{ctx}");
    }
}

/// An official publisher's tone reaches a subscriber on our core, and our tone
/// reaches an official subscriber: both hear 440 Hz at the level sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_flows_both_ways_with_the_official_sdk() {
    common::init_logs();
    let python = official_python();
    let server = Server::start();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/interop/audio_peer.py");
    let (room, mut rx) = server.join("audio-interop", "ours").await;

    // Theirs to ours.
    let mut publisher = tokio::process::Command::new(&python)
        .arg(&script)
        .args([
            "publish",
            &server.url(),
            &server.token("audio-interop", "theirs"),
            "ours",
        ])
        .args(["--freq", "440", "--amplitude", "0.25", "--timeout", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start the official publisher");
    let track = wait_for(&mut rx, Duration::from_secs(30), |e| match e {
        RoomEvent::TrackSubscribed {
            identity, track, ..
        } if identity == "theirs" => Some(track.clone()),
        _ => None,
    })
    .await;
    let mut frames = track.listen();
    let mut heard: Vec<f64> = vec![];
    let mut audible = false;
    while heard.len() < 48_000 {
        let f = tokio::time::timeout(Duration::from_secs(10), frames.recv())
            .await
            .expect("frames from the official publisher")
            .expect("still subscribed");
        let mono: Vec<f64> = f
            .samples
            .chunks_exact(f.channels)
            .map(|c| f64::from(c[0]))
            .collect();
        let level = (mono.iter().map(|x| x * x).sum::<f64>() / mono.len() as f64).sqrt();
        audible |= level > 1000.0;
        if audible {
            heard.extend(mono);
        }
    }
    let heard = &heard[9600..];
    let goertzel = |freq: f64| {
        let k = 2.0 * (2.0 * std::f64::consts::PI * freq / 48_000.0).cos();
        let (mut s1, mut s2) = (0.0, 0.0);
        for x in heard {
            let s = x + k * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        s1 * s1 + s2 * s2 - k * s1 * s2
    };
    assert!(
        goertzel(440.0) > 100.0 * goertzel(1000.0),
        "440 Hz dominates"
    );
    let rms = (heard.iter().map(|x| x * x).sum::<f64>() / heard.len() as f64).sqrt() / 32768.0;
    // A 0.25 full-scale sine has an RMS of 0.177.
    assert!((0.12..0.24).contains(&rms), "level {rms}");
    let _ = publisher.kill().await;

    // Ours to theirs.
    let source = livekit_ffi::audio::AudioSource::new(48_000, 1, 100).unwrap();
    let local = livekit_ffi::audio::LocalAudioTrack::new("tone", source.clone());
    let player = tokio::spawn(async move {
        let mut n = 0u64;
        loop {
            let chunk: Vec<i16> = (0..480)
                .map(|i| {
                    let t = (n + i) as f64 / 48_000.0;
                    ((2.0 * std::f64::consts::PI * 440.0 * t).sin() * 16384.0) as i16
                })
                .collect();
            n += 480;
            if source.capture(&chunk).await.is_err() {
                return;
            }
        }
    });
    room.publish_audio(&local, livekit_ffi::PublishOptions::default())
        .await
        .expect("published");
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .args([
            "receive",
            &server.url(),
            &server.token("audio-interop", "theirs2"),
            "ours",
        ])
        .args(["--seconds", "1", "--timeout", "40"])
        .stderr(Stdio::inherit())
        .output()
        .await
        .expect("run the official receiver");
    player.abort();
    let text = String::from_utf8_lossy(&out.stdout);
    let audio: serde_json::Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "audio")
        .unwrap_or_else(|| panic!("no audio heard by the official SDK:\n{text}"));
    let freq = audio["freq"].as_f64().unwrap();
    let rms = audio["rms"].as_f64().unwrap();
    assert!((430.0..450.0).contains(&freq), "{audio}");
    // Sent at half scale: RMS 0.354.
    assert!((0.25..0.45).contains(&rms), "{audio}");
    room.disconnect().await;
}

/// The official Python SDK loaded on our core (`LIVEKIT_LIB_PATH`) publishes a tone
/// that another official SDK on our core hears through its `AudioStream`: tracks,
/// publications and audio streams speak the official FFI protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_audio_runs_on_our_core() {
    common::init_logs();
    let python = official_python();
    let lib = our_cdylib();
    let server = Server::start();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/interop/audio_peer.py");
    let mut publisher = tokio::process::Command::new(&python)
        .arg(&script)
        .args([
            "publish",
            &server.url(),
            &server.token("dropin-audio", "pub"),
            "rec",
        ])
        .args(["--timeout", "60"])
        .env("LIVEKIT_LIB_PATH", &lib)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start the publisher");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(&python)
            .arg(&script)
            .args([
                "receive",
                &server.url(),
                &server.token("dropin-audio", "rec"),
                "pub",
            ])
            .args(["--seconds", "1", "--timeout", "40"])
            .env("LIVEKIT_LIB_PATH", &lib)
            .stderr(Stdio::inherit())
            .output(),
    )
    .await
    .expect("the receiver finishes")
    .expect("run the receiver");
    let _ = publisher.kill().await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "receiver failed:\n{text}");
    let audio: serde_json::Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "audio")
        .unwrap_or_else(|| panic!("no audio:\n{text}"));
    let freq = audio["freq"].as_f64().unwrap();
    assert!((430.0..450.0).contains(&freq), "{audio}");
    assert!(
        (0.25..0.45).contains(&audio["rms"].as_f64().unwrap()),
        "{audio}"
    );
}
