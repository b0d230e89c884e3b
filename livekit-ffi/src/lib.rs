//! livekit-ffi: the core of a LiveKit real-time client.
//!
//! How the pieces fit, from the wire up:
//! - `signal` speaks LiveKit's protobuf signaling over one WebSocket (join, offers,
//!   trickle, pings, leave) and maps refused joins to [`FailureReason`]s.
//! - `peer` drives one str0m peer connection (publisher or subscriber) with its own
//!   UDP socket and timer; str0m itself does no I/O. `sdp` reads the few SDP facts
//!   str0m does not give (m-lines and mids for trickle, message size limit).
//! - `outbox` is a room's send side: `livekit_core::outbox` (one ordered queue per
//!   data channel, reliable sequence numbers, the resend buffer) behind a lock,
//!   with wake-ups and byte-bounded admission; the publisher's peer task drains it
//!   while SCTP's buffered amount is low. `data` decodes received packets and drops
//!   duplicates with `livekit_core::dedup`.
//! - `room` turns signal updates into participants and [`RoomEvent`]s.
//! - `rpc` and `stream` give a room the shared core's RPC and data-stream state
//!   machines (`livekit-core`) with a clock, random ids and the outbox.
//! - `engine` is a sans-IO state machine (join, negotiation per transport, requests,
//!   held data, resume or rejoin) run by one driver task per room that owns the
//!   sockets; [`Room`] is the user's handle.
//! - `state` re-exports the connection states, failure reasons, leave actions and
//!   retry policy of `livekit_core` (shared with the firmware) and checks core's
//!   wire values against `livekit-protocol`.
//! - [`ffi`] serves the protobuf FFI protocol (and the official C ABI) on top; its
//!   events reach the client through a queue drained by a thread of their own, so
//!   no transport thread ever waits for the client.
//!
//! Media goes beside data: a module per kind (`audio`, then `video`) for its
//! codec and jitter logic, its tracks negotiated by `engine::transport`, and its
//! frames carried by the peer task like data channel messages.

pub mod audio;
mod data;
mod engine;
mod error;
pub mod ffi;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod ice;
mod ice_tcp;
mod outbox;
mod peer;
mod resolve;
mod room;
mod rpc;
mod sdp;
mod signal;
mod state;
pub mod stats;
mod stream;
mod turn;
pub mod video;

pub use data::{DataKind, ReceivedData, UserData};
pub use engine::{PublishError, PublishOptions, Room, RoomOptions, SessionStats};
pub use error::{DataError, Error, Result};
pub use outbox::Done;
pub use room::{Participant, RoomEvent, RoomInfo};
pub use rpc::{
    PerformRpc, RpcError, RpcErrorCode, RpcInvocation, DEFAULT_MAX_ROUND_TRIP_MS,
    DEFAULT_RESPONSE_TIMEOUT_MS, MAX_RPC_PAYLOAD_BYTES,
};
pub use signal::JoinOptions;
pub use state::{ConnectionState, FailureReason, RetryPolicy};
pub use stream::{
    StreamError, StreamHandler, StreamHeader, StreamKind, StreamOptions, StreamWriter,
    BYTES_MIME_TYPE, DEFAULT_MAX_STREAMS, STREAM_CHUNK_SIZE, TEXT_MIME_TYPE,
};

/// A chat message as it travels (id, timestamp, text, edit and delete marks).
pub use livekit_core::packet::ChatMessage;
pub use livekit_protocol as proto;
