//! Typed errors of the core. Each carries enough context to be shown to a user as is.

use crate::state::FailureReason;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// Joining failed; the reason says why in the ESP32 SDK's terms.
    #[error("could not connect ({reason}): {message}")]
    Connect {
        reason: FailureReason,
        message: String,
    },
    #[error("not connected")]
    NotConnected,
    #[error("the room was closed")]
    Closed,
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("signal: {0}")]
    Signal(String),
    #[error("peer connection: {0}")]
    Rtc(String),
    #[error("the server refused the request: {0}")]
    Refused(String),
    #[error("timed out: {0}")]
    Timeout(&'static str),
    #[error("data stream: {0}")]
    Stream(livekit_core::stream::StreamError),
}

impl Error {
    /// The failure reason this error stands for, where it is a connection failure.
    pub fn failure_reason(&self) -> FailureReason {
        match self {
            Error::Connect { reason, .. } => *reason,
            Error::InvalidUrl { .. } => FailureReason::Unreachable,
            Error::Rtc(_) => FailureReason::Rtc,
            Error::Timeout(_) => FailureReason::ConnectionTimeout,
            Error::Signal(_) => FailureReason::SignalClose,
            _ => FailureReason::Other,
        }
    }

    pub(crate) fn connect(reason: FailureReason, message: impl Into<String>) -> Self {
        Error::Connect {
            reason,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    #[error("data packet of {size} bytes is over the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("topic is over {max} bytes")]
    TopicTooLong { max: usize },
    #[error("data channel {0} is not open")]
    ChannelNotOpen(&'static str),
    #[error("malformed data packet: {0}")]
    Malformed(String),
}

impl From<livekit_core::outbox::TooLarge> for DataError {
    fn from(e: livekit_core::outbox::TooLarge) -> Self {
        DataError::TooLarge {
            size: e.size,
            max: e.max,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
