//! Connection states and failure reasons, as the ESP32 SDK defines them.
//!
//! Pure functions only: how an HTTP status, a server `LeaveRequest` or a local
//! condition maps to a reason, and how long to wait before the next retry.
//! The engine feeds facts in; nothing here touches a socket.

use std::fmt;
use std::time::Duration;

use livekit_protocol::DisconnectReason;

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
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disconnected => "DISCONNECTED",
            Self::Connecting => "CONNECTING",
            Self::Connected => "CONNECTED",
            Self::Reconnecting => "RECONNECTING",
            Self::Failed => "FAILED",
        }
    }
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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

    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get(v as usize).copied()
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

    /// The reason for a server `LeaveRequest`'s `DisconnectReason`.
    pub fn from_disconnect_reason(reason: i32) -> Self {
        match DisconnectReason::try_from(reason) {
            Ok(DisconnectReason::UnknownReason) | Ok(DisconnectReason::ClientInitiated) => {
                Self::None
            }
            Ok(DisconnectReason::DuplicateIdentity) => Self::DuplicateIdentity,
            Ok(DisconnectReason::ServerShutdown) => Self::ServerShutdown,
            Ok(DisconnectReason::ParticipantRemoved) => Self::ParticipantRemoved,
            Ok(DisconnectReason::RoomDeleted) => Self::RoomDeleted,
            Ok(DisconnectReason::StateMismatch) => Self::StateMismatch,
            Ok(DisconnectReason::JoinFailure) => Self::JoinIncomplete,
            Ok(DisconnectReason::Migration) => Self::Migration,
            Ok(DisconnectReason::SignalClose) => Self::SignalClose,
            Ok(DisconnectReason::RoomClosed) => Self::RoomClosed,
            Ok(DisconnectReason::UserUnavailable) => Self::SipUserUnavailable,
            Ok(DisconnectReason::UserRejected) => Self::SipUserRejected,
            Ok(DisconnectReason::SipTrunkFailure) => Self::SipTrunkFailure,
            Ok(DisconnectReason::ConnectionTimeout) => Self::ConnectionTimeout,
            Ok(DisconnectReason::MediaFailure) => Self::MediaFailure,
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
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The server's `LeaveRequest.action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveAction {
    Disconnect,
    Resume,
    Reconnect,
}

impl LeaveAction {
    pub fn from_request(action: i32, can_reconnect: bool) -> Self {
        use livekit_protocol::leave_request::Action;
        match Action::try_from(action) {
            Ok(Action::Resume) => Self::Resume,
            Ok(Action::Reconnect) => Self::Reconnect,
            // Servers older than the `action` field only set `can_reconnect`.
            Ok(Action::Disconnect) if can_reconnect => Self::Reconnect,
            Ok(Action::Disconnect) => Self::Disconnect,
            Err(_) => {
                log::warn!("unknown leave action {action}; going by can_reconnect");
                if can_reconnect {
                    Self::Reconnect
                } else {
                    Self::Disconnect
                }
            }
        }
    }
}

/// Reconnection policy: how many attempts and how long to wait before each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub max_delay: Duration,
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        // The ESP32 SDK's CONFIG_LK_MAX_RETRIES default; the RTCEngine seed's caps.
        Self {
            max_attempts: 7,
            max_delay: Duration::from_secs(5),
            give_up_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Delay before attempt `n` (0-based): quadratic growth as in the RTCEngine seed,
    /// capped, so the first retry is almost immediate.
    pub fn delay(&self, attempt: u32) -> Duration {
        let n = attempt as u64;
        let ms = 100u64.saturating_add(n.saturating_mul(n).saturating_mul(500));
        Duration::from_millis(ms).min(self.max_delay)
    }

    /// `Some(delay)` when attempt `n` may go ahead after `elapsed` since the loss.
    pub fn next(&self, attempt: u32, elapsed: Duration) -> Option<Duration> {
        if attempt >= self.max_attempts || elapsed >= self.give_up_after {
            return None;
        }
        Some(self.delay(attempt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_round_trips_through_its_number() {
        for r in FailureReason::ALL {
            assert_eq!(FailureReason::from_u8(r as u8), Some(r));
        }
        assert_eq!(FailureReason::from_u8(22), None);
    }

    #[test]
    fn validate_status_maps_like_the_esp32_sdk() {
        assert_eq!(
            FailureReason::from_validate_status(None),
            FailureReason::Unreachable
        );
        assert_eq!(
            FailureReason::from_validate_status(Some(400)),
            FailureReason::BadToken
        );
        assert_eq!(
            FailureReason::from_validate_status(Some(401)),
            FailureReason::Unauthorized
        );
    }

    #[test]
    fn leave_reasons_map_to_failure_reasons() {
        assert_eq!(
            FailureReason::from_disconnect_reason(DisconnectReason::DuplicateIdentity as i32),
            FailureReason::DuplicateIdentity
        );
        assert_eq!(
            FailureReason::from_disconnect_reason(DisconnectReason::RoomDeleted as i32),
            FailureReason::RoomDeleted
        );
        assert_eq!(
            FailureReason::from_disconnect_reason(DisconnectReason::ParticipantRemoved as i32),
            FailureReason::ParticipantRemoved
        );
        assert_eq!(
            FailureReason::from_disconnect_reason(999),
            FailureReason::Other
        );
    }

    #[test]
    fn retry_delay_grows_and_is_capped() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(0), Duration::from_millis(100));
        assert_eq!(p.delay(1), Duration::from_millis(600));
        assert_eq!(p.delay(10), Duration::from_secs(5));
        assert!(p.next(p.max_attempts, Duration::ZERO).is_none());
        assert!(p.next(0, Duration::from_secs(61)).is_none());
        assert_eq!(p.next(2, Duration::ZERO), Some(Duration::from_millis(2100)));
    }

    #[test]
    fn leave_action_prefers_the_action_field() {
        assert_eq!(LeaveAction::from_request(1, false), LeaveAction::Resume);
        assert_eq!(LeaveAction::from_request(0, true), LeaveAction::Reconnect);
        assert_eq!(LeaveAction::from_request(0, false), LeaveAction::Disconnect);
    }
}
