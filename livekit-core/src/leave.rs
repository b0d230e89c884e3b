//! What the server's `LeaveRequest` asks of a client: go away, resume the session
//! in place, or join afresh.
//!
//! Older servers set only `can_reconnect`; newer ones set `action`. Both readings
//! live here, with the reason a leave that names none stands for.

use crate::failure::FailureReason;

/// `livekit.LeaveRequest.Action` wire values.
pub mod action {
    pub const DISCONNECT: i32 = 0;
    pub const RESUME: i32 = 1;
    pub const RECONNECT: i32 = 2;
}

/// The server's `LeaveRequest.action`, or what a loss calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaveAction {
    /// The session is over for good.
    Disconnect,
    /// Keep the session: reconnect the signal and restart ICE.
    Resume,
    /// Join again as a new session.
    Reconnect,
}

impl LeaveAction {
    /// The action named by a `LeaveRequest.action` value, if it is a known one.
    pub fn from_field(action: i32) -> Option<Self> {
        match action {
            action::DISCONNECT => Some(Self::Disconnect),
            action::RESUME => Some(Self::Resume),
            action::RECONNECT => Some(Self::Reconnect),
            _ => None,
        }
    }

    /// What a `LeaveRequest` asks for. A `Disconnect` (the field's default) with
    /// `can_reconnect` comes from a server older than the `action` field, as does
    /// an unknown action: both go by `can_reconnect`.
    pub fn from_request(action: i32, can_reconnect: bool) -> Self {
        match Self::from_field(action) {
            Some(Self::Disconnect) | None if can_reconnect => Self::Reconnect,
            Some(a) => a,
            None => Self::Disconnect,
        }
    }

    /// The reason a leave with this action stands for when it names none: during
    /// a join the join is incomplete, a plain disconnect is `Other`, and a leave
    /// that invites us back is the server closing the signal.
    pub fn fallback_reason(self, joining: bool) -> FailureReason {
        match self {
            _ if joining => FailureReason::JoinIncomplete,
            Self::Disconnect => FailureReason::Other,
            Self::Resume | Self::Reconnect => FailureReason::SignalClose,
        }
    }

    /// Whether a session lost with this action and `reason` is worth retrying.
    pub fn retries(self, reason: FailureReason) -> bool {
        self != Self::Disconnect && reason.is_retryable()
    }
}

#[cfg(any(test, feature = "selftest"))]
pub(crate) mod tests {
    use super::*;

    #[cfg_attr(test, test)]
    fn leave_action_prefers_the_action_field() {
        assert_eq!(LeaveAction::from_request(1, false), LeaveAction::Resume);
        assert_eq!(LeaveAction::from_request(1, true), LeaveAction::Resume);
        assert_eq!(LeaveAction::from_request(2, false), LeaveAction::Reconnect);
        assert_eq!(LeaveAction::from_request(0, true), LeaveAction::Reconnect);
        assert_eq!(LeaveAction::from_request(0, false), LeaveAction::Disconnect);
    }

    #[cfg_attr(test, test)]
    fn an_unknown_action_goes_by_can_reconnect() {
        assert_eq!(LeaveAction::from_field(7), None);
        assert_eq!(LeaveAction::from_request(7, true), LeaveAction::Reconnect);
        assert_eq!(
            LeaveAction::from_request(-1, false),
            LeaveAction::Disconnect
        );
    }

    #[cfg_attr(test, test)]
    fn a_leave_without_a_reason_stands_for_its_situation() {
        use FailureReason as F;
        for a in [
            LeaveAction::Disconnect,
            LeaveAction::Resume,
            LeaveAction::Reconnect,
        ] {
            assert_eq!(a.fallback_reason(true), F::JoinIncomplete);
        }
        assert_eq!(LeaveAction::Disconnect.fallback_reason(false), F::Other);
        assert_eq!(LeaveAction::Resume.fallback_reason(false), F::SignalClose);
        assert_eq!(
            LeaveAction::Reconnect.fallback_reason(false),
            F::SignalClose
        );
    }

    #[cfg_attr(test, test)]
    fn only_an_invitation_back_with_a_transient_reason_is_retried() {
        use FailureReason as F;
        assert!(LeaveAction::Resume.retries(F::SignalClose));
        assert!(LeaveAction::Reconnect.retries(F::Rtc));
        assert!(!LeaveAction::Disconnect.retries(F::SignalClose));
        assert!(!LeaveAction::Reconnect.retries(F::DuplicateIdentity));
    }

    /// Every test above, for the bare-metal runner (`selftest` feature).
    pub(crate) const TESTS: &[(&str, fn())] = &[
        (
            "leave_action_prefers_the_action_field",
            leave_action_prefers_the_action_field,
        ),
        (
            "an_unknown_action_goes_by_can_reconnect",
            an_unknown_action_goes_by_can_reconnect,
        ),
        (
            "a_leave_without_a_reason_stands_for_its_situation",
            a_leave_without_a_reason_stands_for_its_situation,
        ),
        (
            "only_an_invitation_back_with_a_transient_reason_is_retried",
            only_an_invitation_back_with_a_transient_reason_is_retried,
        ),
    ];
}
