//! The connection state of a room, as the ESP32 SDK names it.
//!
//! Kept here so the host and the firmware report the same states under the same
//! names and numbers; what moves a room between them is the engine's business.

use core::fmt;

/// Connection state of a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum ConnectionState {
    #[default]
    Disconnected = 0,
    Connecting = 1,
    Connected = 2,
    Reconnecting = 3,
    Failed = 4,
}

impl ConnectionState {
    /// Every state, in the order of its number.
    pub const ALL: [ConnectionState; 5] = [
        Self::Disconnected,
        Self::Connecting,
        Self::Connected,
        Self::Reconnecting,
        Self::Failed,
    ];

    /// The ESP32 SDK's name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disconnected => "DISCONNECTED",
            Self::Connecting => "CONNECTING",
            Self::Connected => "CONNECTED",
            Self::Reconnecting => "RECONNECTING",
            Self::Failed => "FAILED",
        }
    }

    /// The state numbered `v`, if there is one.
    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get(usize::from(v)).copied()
    }
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(any(test, feature = "selftest"))]
pub(crate) mod tests {
    use super::*;
    use alloc::string::ToString;

    #[cfg_attr(test, test)]
    fn states_round_trip_through_their_number_and_show_their_name() {
        for s in ConnectionState::ALL {
            assert_eq!(ConnectionState::from_u8(s as u8), Some(s));
        }
        assert_eq!(ConnectionState::from_u8(5), None);
        assert_eq!(ConnectionState::default(), ConnectionState::Disconnected);
        assert_eq!(ConnectionState::Reconnecting.to_string(), "RECONNECTING");
    }

    /// Every test above, for the bare-metal runner (`selftest` feature).
    pub(crate) const TESTS: &[(&str, fn())] = &[(
        "states_round_trip_through_their_number_and_show_their_name",
        states_round_trip_through_their_number_and_show_their_name,
    )];
}
