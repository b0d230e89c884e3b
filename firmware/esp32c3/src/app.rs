//! What the firmware does in the room, apart from the chip: answers RPC `echo`
//! with its payload, and sends every text stream received on `chat` back to its
//! sender on `chat-echo`, chunk by chunk as it arrives. Everything that happens is
//! logged.
//!
//! Nothing here touches esp-hal: it only drives a [`Device`], so it reads the
//! same on any target.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec;
use core::fmt;

use livekit_device::{ConnectionState, Device, Event, FailureReason, StreamOptions};

/// The RPC method we answer: the response is the request's payload.
pub const ECHO_METHOD: &str = "echo";
/// Text streams on this topic are echoed...
pub const CHAT_TOPIC: &str = "chat";
/// ...on this one, to the participant that sent them.
pub const CHAT_ECHO_TOPIC: &str = "chat-echo";

/// Where the app's log lines go.
pub trait Log {
    fn line(&mut self, args: fmt::Arguments<'_>);
}

macro_rules! note {
    ($log:expr, $($arg:tt)*) => {
        $log.line(format_args!($($arg)*))
    };
}

pub struct App {
    /// Incoming `chat` stream id -> the id of its echo.
    echoes: BTreeMap<String, String>,
}

impl App {
    /// Registers what the app answers on `device`.
    pub fn new(device: &mut Device) -> Self {
        device.register_rpc_method(ECHO_METHOD);
        device.register_stream_topic(CHAT_TOPIC);
        Self {
            echoes: BTreeMap::new(),
        }
    }

    /// Reacts to one event of `device`.
    pub fn on_event(&mut self, device: &mut Device, now: u64, event: Event, log: &mut impl Log) {
        match event {
            Event::StateChanged { state, reason } => {
                if reason == FailureReason::None {
                    note!(log, "state: {state}");
                } else {
                    note!(log, "state: {state} ({reason})");
                }
                if matches!(
                    state,
                    ConnectionState::Disconnected | ConnectionState::Failed
                ) {
                    // The session is over: its streams ended with it.
                    self.echoes.clear();
                }
            }
            Event::Joined {
                room,
                identity,
                participants,
            } => {
                note!(
                    log,
                    "joined room {room:?} as {identity:?}; also there: {participants:?}"
                );
            }
            Event::ParticipantLeft { identity } => note!(log, "{identity:?} left"),
            Event::DataReceived {
                sender,
                topic,
                payload,
                kind,
            } => {
                note!(
                    log,
                    "data from {sender:?} on topic {topic:?} ({} bytes, {kind:?})",
                    payload.len()
                );
            }
            Event::RpcInvocation(call) => {
                let answer = if call.method == ECHO_METHOD {
                    note!(
                        log,
                        "rpc {ECHO_METHOD} from {:?}: {} bytes back",
                        call.caller,
                        call.payload.len()
                    );
                    Ok(call.payload)
                } else {
                    // Not registered, so not expected: refuse it as the core would.
                    note!(log, "rpc {:?} from {:?}: refused", call.method, call.caller);
                    Err(livekit_core::rpc::RpcError::new(
                        livekit_core::rpc::ErrorCode::UnsupportedMethod,
                    ))
                };
                if !device.rpc_respond(now, call.id, answer) {
                    note!(log, "rpc {}: no longer pending", call.id);
                }
            }
            Event::RpcResult { call, outcome } => {
                // We make no calls of our own; log whatever comes.
                note!(log, "rpc call {call} ended: {outcome:?}");
            }
            Event::StreamOpened {
                sender,
                header,
                is_text,
            } => self.on_stream_opened(device, now, sender, header, is_text, log),
            Event::StreamChunk { id, index, content } => {
                let Some(echo) = self.echoes.get(&id) else {
                    return;
                };
                if let Err(e) = device.stream_write(now, echo, &content) {
                    note!(log, "chat {id}: echo of chunk {index} failed: {e}");
                    let echo = self.echoes.remove(&id).unwrap_or_default();
                    let _ = device.stream_close(now, &echo, "echo failed");
                }
            }
            Event::StreamClosed { id, reason } => {
                let Some(echo) = self.echoes.remove(&id) else {
                    return;
                };
                if reason.is_empty() {
                    note!(log, "chat {id}: ended; echo {echo} ends too");
                } else {
                    note!(log, "chat {id}: ended early ({reason}); so does its echo");
                }
                if let Err(e) = device.stream_close(now, &echo, &reason) {
                    note!(log, "chat {id}: closing the echo failed: {e}");
                }
            }
        }
    }

    fn on_stream_opened(
        &mut self,
        device: &mut Device,
        now: u64,
        sender: String,
        header: livekit_core::packet::data_stream::Header,
        is_text: bool,
        log: &mut impl Log,
    ) {
        let id = header.stream_id;
        if header.topic != CHAT_TOPIC {
            return;
        }
        if !is_text {
            note!(log, "chat {id} from {sender:?}: a byte stream, not echoed");
            return;
        }
        let options = StreamOptions {
            topic: String::from(CHAT_ECHO_TOPIC),
            is_text: true,
            total_length: header.total_length,
            destinations: vec![sender.clone()],
            name: String::new(),
        };
        match device.stream_open(now, &options) {
            Ok(echo) => {
                note!(log, "chat {id} from {sender:?}: echoing as {echo}");
                self.echoes.insert(id, echo);
            }
            Err(e) => note!(log, "chat {id} from {sender:?}: cannot echo: {e}"),
        }
    }
}
