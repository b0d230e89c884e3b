//! livekit-core: the parts of a LiveKit client that do no I/O, shared by the host
//! core (`livekit-ffi`) and the firmware.
//!
//! `no_std` + `alloc`: no sockets, no clock, no randomness of its own. Callers pass
//! in `now` (milliseconds on any monotonic clock) and the random ids they need, feed
//! in what arrived, and send what comes back, so the same logic runs on a tokio
//! host and on an ESP32.
//! - [`packet`]: the data-channel messages (LiveKit's `DataPacket` and what it carries).
//! - [`channel`]: the two data channels (`_reliable`, `_lossy`) and the message size cap.
//! - [`outbox`]: the send side: one ordered queue per channel, packets encoded and
//!   numbered as they are pushed, sent reliable ones kept for a resume.
//! - [`reliable`]: reliable sequence numbers (serial order across the wrap) and the
//!   resend buffer trimmed by the server's `last_message_seq`.
//! - [`dedup`]: the receive side's per-sender filter of reliable packets seen before.
//! - [`connection`]: a room's connection states.
//! - [`failure`]: failure reasons and how handshake statuses and leave reasons map
//!   to them (protocol enums read as their `i32` wire values).
//! - [`leave`]: what a server `LeaveRequest` asks for (disconnect, resume, reconnect).
//! - [`retry`]: the reconnection policy (attempts, backoff delays, give-up time).
//! - [`rpc`]: calls made and answered over data packets (acks, timeouts, errors).
//! - [`stream`]: data streams split into chunks and put back together, checked.
//! - [`link`]: the framed link between a device (`livekit-device`) and its gateway.
#![no_std]

extern crate alloc;

pub mod channel;
pub mod connection;
pub mod dedup;
pub mod failure;
pub mod leave;
pub mod link;
pub mod outbox;
pub mod reliable;
pub mod retry;

pub use channel::DataKind;
pub use connection::ConnectionState;
pub use failure::FailureReason;
pub use leave::LeaveAction;
pub use retry::RetryPolicy;

/// LiveKit's data-channel messages, generated from `proto/packet.proto`.
#[allow(clippy::all, missing_docs)]
pub mod packet {
    include!(concat!(env!("OUT_DIR"), "/livekit.rs"));
}

pub mod rpc;
pub mod stream;

/// The unit tests as plain functions, for a runner without the test harness.
#[cfg(any(test, feature = "selftest"))]
pub mod selftest;
