//! Why a connection failed or ended, in the ESP32 SDK's terms, and how each fact
//! the engine sees (a refused handshake's HTTP status, a server `LeaveRequest`'s
//! reason) maps to one.
//!
//! Pure functions of numbers: the protocol's enums are read as their `i32` wire
//! values (named in [`disconnect_reason`] and [`reconnect_reason`]) so the core
//! needs no generated signal protocol.

use core::fmt;

/// `livekit.DisconnectReason` wire values (a server `LeaveRequest.reason`).
pub mod disconnect_reason {
    pub const UNKNOWN_REASON: i32 = 0;
    pub const CLIENT_INITIATED: i32 = 1;
    pub const DUPLICATE_IDENTITY: i32 = 2;
    pub const SERVER_SHUTDOWN: i32 = 3;
    pub const PARTICIPANT_REMOVED: i32 = 4;
    pub const ROOM_DELETED: i32 = 5;
    pub const STATE_MISMATCH: i32 = 6;
    pub const JOIN_FAILURE: i32 = 7;
    pub const MIGRATION: i32 = 8;
    pub const SIGNAL_CLOSE: i32 = 9;
    pub const ROOM_CLOSED: i32 = 10;
    pub const USER_UNAVAILABLE: i32 = 11;
    pub const USER_REJECTED: i32 = 12;
    pub const SIP_TRUNK_FAILURE: i32 = 13;
    pub const CONNECTION_TIMEOUT: i32 = 14;
    pub const MEDIA_FAILURE: i32 = 15;
    pub const AGENT_ERROR: i32 = 16;
}

/// `livekit.ReconnectReason` wire values (the `reconnect_reason` of a resume).
pub mod reconnect_reason {
    pub const UNKNOWN: i32 = 0;
    pub const SIGNAL_DISCONNECTED: i32 = 1;
    pub const PUBLISHER_FAILED: i32 = 2;
    pub const SUBSCRIBER_FAILED: i32 = 3;
    pub const SWITCH_CANDIDATE: i32 = 4;
}

/// Why a room connection failed or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum FailureReason {
    #[default]
    None = 0,
    Unreachable = 1,
    BadToken = 2,
    Unauthorized = 3,
    Rtc = 4,
    MaxRetries = 5,
    PingTimeout = 6,
    DuplicateIdentity = 7,
    ServerShutdown = 8,
    ParticipantRemoved = 9,
    RoomDeleted = 10,
    StateMismatch = 11,
    JoinIncomplete = 12,
    Migration = 13,
    SignalClose = 14,
    RoomClosed = 15,
    SipUserUnavailable = 16,
    SipUserRejected = 17,
    SipTrunkFailure = 18,
    ConnectionTimeout = 19,
    MediaFailure = 20,
    Other = 21,
}

impl FailureReason {
    /// Every reason, in the order of its number.
    pub const ALL: [FailureReason; 22] = [
        Self::None,
        Self::Unreachable,
        Self::BadToken,
        Self::Unauthorized,
        Self::Rtc,
        Self::MaxRetries,
        Self::PingTimeout,
        Self::DuplicateIdentity,
        Self::ServerShutdown,
        Self::ParticipantRemoved,
        Self::RoomDeleted,
        Self::StateMismatch,
        Self::JoinIncomplete,
        Self::Migration,
        Self::SignalClose,
        Self::RoomClosed,
        Self::SipUserUnavailable,
        Self::SipUserRejected,
        Self::SipTrunkFailure,
        Self::ConnectionTimeout,
        Self::MediaFailure,
        Self::Other,
    ];

    /// The ESP32 SDK's name of the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Unreachable => "UNREACHABLE",
            Self::BadToken => "BAD_TOKEN",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Rtc => "RTC",
            Self::MaxRetries => "MAX_RETRIES",
            Self::PingTimeout => "PING_TIMEOUT",
            Self::DuplicateIdentity => "DUPLICATE_IDENTITY",
            Self::ServerShutdown => "SERVER_SHUTDOWN",
            Self::ParticipantRemoved => "PARTICIPANT_REMOVED",
            Self::RoomDeleted => "ROOM_DELETED",
            Self::StateMismatch => "STATE_MISMATCH",
            Self::JoinIncomplete => "JOIN_INCOMPLETE",
            Self::Migration => "MIGRATION",
            Self::SignalClose => "SIGNAL_CLOSE",
            Self::RoomClosed => "ROOM_CLOSED",
            Self::SipUserUnavailable => "SIP_USER_UNAVAILABLE",
            Self::SipUserRejected => "SIP_USER_REJECTED",
            Self::SipTrunkFailure => "SIP_TRUNK_FAILURE",
            Self::ConnectionTimeout => "CONNECTION_TIMEOUT",
            Self::MediaFailure => "MEDIA_FAILURE",
            Self::Other => "OTHER",
        }
    }

    /// The reason numbered `v`, if there is one.
    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get(usize::from(v)).copied()
    }

    /// The reason a failed join is reported with, from the status `/rtc/validate`
    /// answered (None: nothing answered at all).
    pub fn from_validate_status(status: Option<u16>) -> Self {
        match status {
            None => Self::Unreachable,
            Some(400) => Self::BadToken,
            Some(401) | Some(403) => Self::Unauthorized,
            // The server answers but refuses the WebSocket: the room is missing or the
            // server is not a LiveKit server; nothing we can retry into success.
            Some(404) => Self::JoinIncomplete,
            Some(s) if s >= 500 => Self::Unreachable,
            Some(_) => Self::Other,
        }
    }

    /// The reason for a server `LeaveRequest`'s `DisconnectReason` (see
    /// [`disconnect_reason`]); `None` when it names no failure.
    pub fn from_disconnect_reason(reason: i32) -> Self {
        use disconnect_reason as d;
        match reason {
            d::UNKNOWN_REASON | d::CLIENT_INITIATED => Self::None,
            d::DUPLICATE_IDENTITY => Self::DuplicateIdentity,
            d::SERVER_SHUTDOWN => Self::ServerShutdown,
            d::PARTICIPANT_REMOVED => Self::ParticipantRemoved,
            d::ROOM_DELETED => Self::RoomDeleted,
            d::STATE_MISMATCH => Self::StateMismatch,
            d::JOIN_FAILURE => Self::JoinIncomplete,
            d::MIGRATION => Self::Migration,
            d::SIGNAL_CLOSE => Self::SignalClose,
            d::ROOM_CLOSED => Self::RoomClosed,
            d::USER_UNAVAILABLE => Self::SipUserUnavailable,
            d::USER_REJECTED => Self::SipUserRejected,
            d::SIP_TRUNK_FAILURE => Self::SipTrunkFailure,
            d::CONNECTION_TIMEOUT => Self::ConnectionTimeout,
            d::MEDIA_FAILURE => Self::MediaFailure,
            _ => Self::Other,
        }
    }

    /// The reason of a server `LeaveRequest`, or `fallback` when it names none.
    pub fn from_leave(reason: i32, fallback: Self) -> Self {
        match Self::from_disconnect_reason(reason) {
            Self::None => fallback,
            r => r,
        }
    }

    /// Whether retrying the same join can ever succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::Unreachable
                | Self::Rtc
                | Self::PingTimeout
                | Self::SignalClose
                | Self::ServerShutdown
                | Self::Migration
                | Self::StateMismatch
                | Self::JoinIncomplete
                | Self::ConnectionTimeout
                | Self::MediaFailure
        )
    }

    /// The `reconnect_reason` (see [`reconnect_reason`]) a resume after a session
    /// lost for this reason tells the server: a failed peer connection is the
    /// publisher's, anything else the signal connection's.
    pub fn reconnect_reason(self) -> i32 {
        match self {
            Self::Rtc => reconnect_reason::PUBLISHER_FAILED,
            _ => reconnect_reason::SIGNAL_DISCONNECTED,
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(any(test, feature = "selftest"))]
pub(crate) mod tests {
    use super::*;
    use alloc::string::ToString;

    #[cfg_attr(test, test)]
    fn reason_round_trips_through_its_number() {
        for r in FailureReason::ALL {
            assert_eq!(FailureReason::from_u8(r as u8), Some(r));
        }
        assert_eq!(FailureReason::from_u8(22), None);
        assert_eq!(FailureReason::from_u8(u8::MAX), None);
    }

    #[cfg_attr(test, test)]
    fn names_are_the_esp32_sdks() {
        assert_eq!(FailureReason::BadToken.to_string(), "BAD_TOKEN");
        assert_eq!(
            FailureReason::SipUserUnavailable.as_str(),
            "SIP_USER_UNAVAILABLE"
        );
        // Every name is distinct.
        for (i, a) in FailureReason::ALL.iter().enumerate() {
            for b in &FailureReason::ALL[i + 1..] {
                assert_ne!(a.as_str(), b.as_str());
            }
        }
    }

    #[cfg_attr(test, test)]
    fn validate_status_maps_like_the_esp32_sdk() {
        use FailureReason as F;
        assert_eq!(F::from_validate_status(None), F::Unreachable);
        assert_eq!(F::from_validate_status(Some(400)), F::BadToken);
        assert_eq!(F::from_validate_status(Some(401)), F::Unauthorized);
        assert_eq!(F::from_validate_status(Some(403)), F::Unauthorized);
        assert_eq!(F::from_validate_status(Some(404)), F::JoinIncomplete);
        assert_eq!(F::from_validate_status(Some(500)), F::Unreachable);
        assert_eq!(F::from_validate_status(Some(503)), F::Unreachable);
        assert_eq!(F::from_validate_status(Some(418)), F::Other);
        // A validate that passes while the WebSocket was refused is no known failure.
        assert_eq!(F::from_validate_status(Some(200)), F::Other);
    }

    #[cfg_attr(test, test)]
    fn leave_reasons_map_to_failure_reasons() {
        use disconnect_reason as d;
        use FailureReason as F;
        assert_eq!(
            F::from_disconnect_reason(d::DUPLICATE_IDENTITY),
            F::DuplicateIdentity
        );
        assert_eq!(F::from_disconnect_reason(d::ROOM_DELETED), F::RoomDeleted);
        assert_eq!(
            F::from_disconnect_reason(d::PARTICIPANT_REMOVED),
            F::ParticipantRemoved
        );
        assert_eq!(
            F::from_disconnect_reason(d::JOIN_FAILURE),
            F::JoinIncomplete
        );
        assert_eq!(
            F::from_disconnect_reason(d::USER_REJECTED),
            F::SipUserRejected
        );
        assert_eq!(F::from_disconnect_reason(d::AGENT_ERROR), F::Other);
        assert_eq!(F::from_disconnect_reason(999), F::Other);
        assert_eq!(F::from_disconnect_reason(-1), F::Other);
        assert_eq!(F::from_disconnect_reason(d::CLIENT_INITIATED), F::None);
    }

    #[cfg_attr(test, test)]
    fn a_leave_without_a_reason_takes_the_fallback() {
        use disconnect_reason as d;
        use FailureReason as F;
        assert_eq!(
            F::from_leave(d::UNKNOWN_REASON, F::SignalClose),
            F::SignalClose
        );
        assert_eq!(
            F::from_leave(d::SERVER_SHUTDOWN, F::SignalClose),
            F::ServerShutdown
        );
    }

    #[cfg_attr(test, test)]
    fn only_transient_reasons_are_retried() {
        use FailureReason as F;
        for r in [F::Unreachable, F::Rtc, F::PingTimeout, F::ServerShutdown] {
            assert!(r.is_retryable(), "{r}");
        }
        for r in [
            F::None,
            F::BadToken,
            F::Unauthorized,
            F::MaxRetries,
            F::DuplicateIdentity,
            F::ParticipantRemoved,
            F::RoomDeleted,
            F::RoomClosed,
            F::Other,
        ] {
            assert!(!r.is_retryable(), "{r}");
        }
    }

    #[cfg_attr(test, test)]
    fn a_resume_names_the_connection_that_failed() {
        assert_eq!(
            FailureReason::Rtc.reconnect_reason(),
            reconnect_reason::PUBLISHER_FAILED
        );
        assert_eq!(
            FailureReason::PingTimeout.reconnect_reason(),
            reconnect_reason::SIGNAL_DISCONNECTED
        );
    }

    /// Every test above, for the bare-metal runner (`selftest` feature).
    pub(crate) const TESTS: &[(&str, fn())] = &[
        (
            "reason_round_trips_through_its_number",
            reason_round_trips_through_its_number,
        ),
        ("names_are_the_esp32_sdks", names_are_the_esp32_sdks),
        (
            "validate_status_maps_like_the_esp32_sdk",
            validate_status_maps_like_the_esp32_sdk,
        ),
        (
            "leave_reasons_map_to_failure_reasons",
            leave_reasons_map_to_failure_reasons,
        ),
        (
            "a_leave_without_a_reason_takes_the_fallback",
            a_leave_without_a_reason_takes_the_fallback,
        ),
        (
            "only_transient_reasons_are_retried",
            only_transient_reasons_are_retried,
        ),
        (
            "a_resume_names_the_connection_that_failed",
            a_resume_names_the_connection_that_failed,
        ),
    ];
}
