//! How long a connected session's transports may stay lost before the engine acts:
//! an ICE connection that dropped may come back on its own, a closed peer
//! connection usually means the server's `LeaveRequest` (with the real reason) is on
//! its way, and a publisher that was not up at the join must come up in time.

use std::time::{Duration, Instant};

use str0m::IceConnectionState as Ice;

use crate::peer::PeerRole;

/// How long a lost ICE connection may stay lost before we act.
pub const ICE_LOST_TIMEOUT: Duration = Duration::from_secs(10);
/// A closed peer connection usually means the server is ending the session; give its
/// `LeaveRequest` (and the real reason) this long to arrive first.
pub const LEAVE_GRACE: Duration = Duration::from_secs(2);

/// A loss we wait on before acting: when, why, and whether ICE may still recover.
#[derive(Debug)]
struct PendingLoss {
    at: Instant,
    message: String,
    ice: bool,
}

/// What is due when a watch expires.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Due {
    /// The publisher never came up: rejoin.
    Publisher,
    /// A transport stayed lost: resume, with this description.
    Lost(String),
}

#[derive(Debug, Default)]
pub(super) struct LossWatch {
    pending: Option<PendingLoss>,
    publisher_by: Option<Instant>,
}

impl LossWatch {
    /// The publisher must be up by `at` (it may finish after the join).
    pub fn publisher_needed_by(&mut self, at: Option<Instant>) {
        self.publisher_by = at;
    }

    pub fn publisher_up(&mut self) {
        self.publisher_by = None;
    }

    pub fn ice_changed(&mut self, now: Instant, role: PeerRole, state: Ice) {
        let up = matches!(state, Ice::Connected | Ice::Completed);
        if state == Ice::Disconnected && self.pending.is_none() {
            self.pending = Some(PendingLoss {
                at: now + ICE_LOST_TIMEOUT,
                message: format!("{role:?} ICE connection lost"),
                ice: true,
            });
        } else if up && self.pending.as_ref().is_some_and(|l| l.ice) {
            self.pending = None;
        }
    }

    pub fn peer_closed(&mut self, now: Instant, role: PeerRole, why: &str) {
        let at = now + LEAVE_GRACE;
        if self.pending.as_ref().is_none_or(|l| l.at > at) {
            self.pending = Some(PendingLoss {
                at,
                message: format!("{role:?} peer connection closed: {why}"),
                ice: false,
            });
        }
    }

    /// What expired by `now`, if anything (and it stops being watched).
    pub fn due(&mut self, now: Instant) -> Option<Due> {
        if self.publisher_by.is_some_and(|at| now >= at) {
            self.publisher_by = None;
            return Some(Due::Publisher);
        }
        if self.pending.as_ref().is_some_and(|l| now >= l.at) {
            return self.pending.take().map(|l| Due::Lost(l.message));
        }
        None
    }

    pub fn clear(&mut self) {
        *self = Self::default();
    }

    pub fn deadline(&self) -> Option<Instant> {
        [self.pending.as_ref().map(|l| l.at), self.publisher_by]
            .into_iter()
            .flatten()
            .min()
    }
}
