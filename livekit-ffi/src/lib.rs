//! livekit-ffi: the core of a LiveKit real-time client.
//!
//! How the pieces fit, from the wire up:
//! - [`signal`] speaks LiveKit's protobuf signaling over one WebSocket (join, offers,
//!   trickle, pings, leave) and maps refused joins to [`state::FailureReason`]s.
//! - [`peer`] drives one str0m peer connection (publisher or subscriber) with its own
//!   UDP socket and timer; str0m itself does no I/O.
//! - [`data`] encodes user packets, numbers reliable ones, keeps the resend buffer and
//!   drops duplicates on receive.
//! - [`room`] turns signal updates into participants and [`room::RoomEvent`]s.
//! - [`engine`] joins (signal + both peers until the data channels are open), keeps the
//!   session alive, rejoins on loss, and gives the user a [`Room`] handle.
//! - [`state`] holds the connection states, failure reasons and retry policy shared
//!   with the firmware.
//!
//! `data`, `room` and `state` are pure state machines, tested without sockets.

pub mod data;
pub mod engine;
pub mod error;
pub mod ffi;
pub mod outbox;
pub mod peer;
pub mod room;
pub mod sdp;
pub mod signal;
pub mod state;

pub use data::{DataKind, ReceivedData, UserData};
pub use engine::{Room, RoomOptions};
pub use error::{DataError, Error, Result};
pub use room::{Participant, RoomEvent, RoomInfo};
pub use state::{ConnectionState, FailureReason};

pub use livekit_protocol as proto;
