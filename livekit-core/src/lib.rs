//! livekit-core: the parts of a LiveKit client that do no I/O, shared by the host
//! core (`livekit-ffi`) and the firmware.
//!
//! `no_std` + `alloc`: no sockets, no clock, no randomness of its own. Callers pass
//! in `now` (milliseconds on any monotonic clock) and the random ids they need, feed
//! in what arrived, and send what comes back, so the same logic runs on a tokio
//! host and on an ESP32.
//! - [`packet`]: the data-channel messages (LiveKit's `DataPacket` and what it carries).
//! - [`rpc`]: calls made and answered over data packets (acks, timeouts, errors).
//! - [`stream`]: data streams split into chunks and put back together, checked.
#![no_std]

extern crate alloc;

/// LiveKit's data-channel messages, generated from `proto/packet.proto`.
#[allow(clippy::all, missing_docs)]
pub mod packet {
    include!(concat!(env!("OUT_DIR"), "/livekit.rs"));
}

pub mod rpc;
pub mod stream;
