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
