//! livekit-gateway: devices' LiveKit sessions, held in real rooms by our host core.
//!
//! A device (the ESP32 firmware, or its simulation) runs `livekit-device` and talks to
//! a gateway over the framed link of `livekit_core::link`. The gateway ([`Gateway`],
//! `relay`) joins the room for it and relays data packets both ways, untouched: RPC
//! and data streams are the device's own logic. [`host`] runs that same device logic
//! on a host, over TCP or an in-process link: the simulated device
//! (`livekit-sim-device`) and the ESP32 SDK's C API (`livekit-esp32`) are built on it.

pub mod host;
mod relay;

pub use host::{DeviceHost, Transport};
pub use relay::{Gateway, GatewayOptions};
