//! Connection states, failure reasons, leave actions and the retry policy: they
//! live in `livekit_core` (shared with the firmware), which reads the protocol's
//! enums as their wire values; the tests here hold those values to the
//! `livekit-protocol` enums the engine speaks.

pub use livekit_core::{ConnectionState, FailureReason, LeaveAction, RetryPolicy};

#[cfg(test)]
mod tests {
    use livekit_core::failure::{disconnect_reason as d, reconnect_reason as r};
    use livekit_core::leave::action;
    use livekit_protocol::leave_request::Action;
    use livekit_protocol::{DisconnectReason, ReconnectReason};

    #[test]
    fn core_wire_values_are_the_protocols() {
        use DisconnectReason as D;
        let pairs = [
            (d::UNKNOWN_REASON, D::UnknownReason),
            (d::CLIENT_INITIATED, D::ClientInitiated),
            (d::DUPLICATE_IDENTITY, D::DuplicateIdentity),
            (d::SERVER_SHUTDOWN, D::ServerShutdown),
            (d::PARTICIPANT_REMOVED, D::ParticipantRemoved),
            (d::ROOM_DELETED, D::RoomDeleted),
            (d::STATE_MISMATCH, D::StateMismatch),
            (d::JOIN_FAILURE, D::JoinFailure),
            (d::MIGRATION, D::Migration),
            (d::SIGNAL_CLOSE, D::SignalClose),
            (d::ROOM_CLOSED, D::RoomClosed),
            (d::USER_UNAVAILABLE, D::UserUnavailable),
            (d::USER_REJECTED, D::UserRejected),
            (d::SIP_TRUNK_FAILURE, D::SipTrunkFailure),
            (d::CONNECTION_TIMEOUT, D::ConnectionTimeout),
            (d::MEDIA_FAILURE, D::MediaFailure),
            (d::AGENT_ERROR, D::AgentError),
        ];
        for (value, reason) in pairs {
            assert_eq!(value, reason as i32, "{reason:?}");
        }
        assert_eq!(r::UNKNOWN, ReconnectReason::RrUnknown as i32);
        assert_eq!(
            r::SIGNAL_DISCONNECTED,
            ReconnectReason::RrSignalDisconnected as i32
        );
        assert_eq!(
            r::PUBLISHER_FAILED,
            ReconnectReason::RrPublisherFailed as i32
        );
        assert_eq!(
            r::SUBSCRIBER_FAILED,
            ReconnectReason::RrSubscriberFailed as i32
        );
        assert_eq!(
            r::SWITCH_CANDIDATE,
            ReconnectReason::RrSwitchCandidate as i32
        );
        assert_eq!(action::DISCONNECT, Action::Disconnect as i32);
        assert_eq!(action::RESUME, Action::Resume as i32);
        assert_eq!(action::RECONNECT, Action::Reconnect as i32);
    }
}
