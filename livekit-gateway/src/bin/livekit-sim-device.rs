//! `livekit-sim-device`: the firmware's device logic and its demo app, run on a host
//! and linked to a gateway over TCP, in place of a board.
//!
//!     livekit-sim-device --gateway HOST:PORT --url URL --token TOKEN [--id DEVICE_ID]
//!
//! The app is the firmware's: RPC method `echo` answers with its payload, and a text
//! stream received on topic `chat` is sent back on `chat-echo` to its sender. What
//! happens is printed on stdout, one tab-separated line per event; commands come on
//! stdin, one per line:
//!
//!     rpc DESTINATION METHOD PAYLOAD   call a method of another participant
//!     send TOPIC TEXT                  send a text stream to everyone
//!     data TOPIC TEXT                  send reliable user data to everyone
//!     close                            leave the room
//!     quit                             exit

use std::collections::HashMap;
use std::io::Write;

use livekit_device::{Config, DataKind, Event, StreamOptions};
use livekit_gateway::{DeviceHost, Transport};
use parking_lot::Mutex;
use std::sync::Arc;

/// Received text streams being put together: id -> (sender, topic, text so far).
type Texts = HashMap<String, (String, String, Vec<u8>)>;

fn say(fields: &[&str]) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", fields.join("\t"));
    let _ = out.flush();
}

fn usage() -> ! {
    eprintln!(
        "usage: livekit-sim-device --gateway HOST:PORT --url URL --token TOKEN [--id DEVICE_ID]"
    );
    std::process::exit(2)
}

fn main() {
    let mut gateway = None;
    let mut url = None;
    let mut token = None;
    let mut id = format!("sim-{}", std::process::id());
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--gateway" => gateway = Some(v),
            "--url" => url = Some(v),
            "--token" => token = Some(v),
            "--id" => id = v,
            _ => usage(),
        }
    }
    let (Some(gateway), Some(url), Some(token)) = (gateway, url, token) else {
        usage()
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("livekit-sim-device: cannot start: {e}");
            std::process::exit(1)
        }
    };
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7)
        ^ u64::from(std::process::id());
    let config = Config {
        device_id: id,
        ..Config::default()
    };
    // The app reacts to events by calling the device: it needs the host, which only
    // exists once started, so the callback reaches it through this slot.
    let slot: Arc<Mutex<Option<Arc<DeviceHost>>>> = Arc::new(Mutex::new(None));
    let texts: Arc<Mutex<Texts>> = Arc::default();
    let app_slot = slot.clone();
    let host = Arc::new(DeviceHost::start(
        runtime.handle(),
        config,
        seed,
        Transport::Tcp(gateway),
        move |e| on_event(&app_slot, &texts, e),
    ));
    *slot.lock() = Some(host.clone());
    host.with(|d, now| {
        d.register_rpc_method("echo");
        d.register_stream_topic("chat");
        if let Err(e) = d.connect(now, &url, &token) {
            say(&["error", "connect", &e.to_string()]);
        }
    });

    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        line.clear();
        match stdin.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let mut parts = line.trim_end_matches(['\r', '\n']).splitn(4, ' ');
        match parts.next().unwrap_or("") {
            "rpc" => {
                let (Some(dest), Some(method)) = (parts.next(), parts.next()) else {
                    say(&["error", "rpc", "usage: rpc DESTINATION METHOD PAYLOAD"]);
                    continue;
                };
                let payload = parts.next().unwrap_or("").to_string();
                let r = host.with(|d, now| d.perform_rpc(now, dest, method, &payload, 10_000));
                match r {
                    Ok(call) => say(&["rpc-sent", &call.to_string()]),
                    Err(e) => say(&["error", "rpc", &e.to_string()]),
                }
            }
            "send" | "data" if parts.clone().count() >= 1 => {
                let verb = if line.starts_with("send") {
                    "send"
                } else {
                    "data"
                };
                let topic = parts.next().unwrap_or("").to_string();
                let rest: Vec<&str> = parts.collect();
                let text = rest.join(" ");
                let r = host.with(|d, now| {
                    if verb == "data" {
                        return d.publish_data(
                            now,
                            text.as_bytes(),
                            Some(&topic),
                            &[],
                            DataKind::Reliable,
                        );
                    }
                    send_text(d, now, &topic, &text, &[])
                });
                match r {
                    Ok(()) => say(&["sent", verb, &topic]),
                    Err(e) => say(&["error", verb, &e.to_string()]),
                }
            }
            "close" => host.with(|d, now| d.close(now)),
            "quit" => break,
            "" => {}
            other => say(&["error", "unknown command", other]),
        }
    }
    host.with(|d, now| d.close(now));
    // Let the Close frame go out before the link drops.
    std::thread::sleep(std::time::Duration::from_millis(200));
    slot.lock().take();
    drop(host);
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
}

fn send_text(
    d: &mut livekit_device::Device,
    now: u64,
    topic: &str,
    text: &str,
    to: &[String],
) -> Result<(), livekit_device::DeviceError> {
    let id = d.stream_open(
        now,
        &StreamOptions {
            topic: topic.to_string(),
            is_text: true,
            total_length: Some(text.len() as u64),
            destinations: to.to_vec(),
            ..Default::default()
        },
    )?;
    d.stream_write(now, &id, text.as_bytes())?;
    d.stream_close(now, &id, "")
}

fn on_event(slot: &Mutex<Option<Arc<DeviceHost>>>, texts: &Mutex<Texts>, e: Event) {
    let host = slot.lock().clone();
    match e {
        Event::StateChanged { state, reason } => say(&["state", state.as_str(), reason.as_str()]),
        Event::Joined { room, identity, .. } => say(&["joined", &room, &identity]),
        Event::ParticipantLeft { identity } => say(&["left", &identity]),
        Event::DataReceived {
            sender,
            topic,
            payload,
            ..
        } => say(&[
            "data",
            &sender,
            topic.as_deref().unwrap_or(""),
            &String::from_utf8_lossy(&payload),
        ]),
        Event::RpcInvocation(inv) => {
            say(&["invoked", &inv.caller, &inv.method, &inv.payload]);
            if let Some(h) = host {
                let answer = if inv.method == "echo" {
                    Ok(inv.payload.clone())
                } else {
                    Err(livekit_core::rpc::RpcError::new(
                        livekit_core::rpc::ErrorCode::UnsupportedMethod,
                    ))
                };
                h.with(|d, now| d.rpc_respond(now, inv.id, answer));
            }
        }
        Event::RpcResult { call, outcome } => match outcome {
            Ok(payload) => say(&["rpc-result", &call.to_string(), "ok", &payload]),
            Err(e) => say(&[
                "rpc-result",
                &call.to_string(),
                "error",
                &e.code.to_string(),
                &e.message,
            ]),
        },
        Event::StreamOpened { sender, header, .. } => {
            say(&["stream-opened", &header.stream_id, &header.topic, &sender]);
            texts
                .lock()
                .insert(header.stream_id, (sender, header.topic, Vec::new()));
        }
        Event::StreamChunk { id, content, .. } => {
            if let Some((_, _, text)) = texts.lock().get_mut(&id) {
                text.extend_from_slice(&content);
            }
        }
        Event::StreamClosed { id, reason } => {
            let Some((sender, topic, text)) = texts.lock().remove(&id) else {
                return;
            };
            let text = String::from_utf8_lossy(&text).into_owned();
            if !reason.is_empty() {
                say(&["stream-failed", &id, &reason]);
                return;
            }
            say(&["text", &topic, &sender, &text]);
            if topic == "chat" {
                if let Some(h) = host {
                    let to = [sender];
                    let r = h.with(|d, now| send_text(d, now, "chat-echo", &text, &to));
                    if let Err(e) = r {
                        say(&["error", "echo", &e.to_string()]);
                    }
                }
            }
        }
    }
}
