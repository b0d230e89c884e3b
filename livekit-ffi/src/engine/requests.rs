//! Signal requests waiting for the server's `RequestResponse`, by request id.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use livekit_protocol as proto;

use crate::error::Error;

/// How long the server may take to confirm or refuse a request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a signal request did not go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    NotConnected,
    /// The server refused it, with its reason.
    Refused(String),
    /// The server did not answer within [`REQUEST_TIMEOUT`].
    NoAnswer,
    Closed,
}

impl From<RequestError> for Error {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::NotConnected => Error::NotConnected,
            RequestError::Refused(m) => Error::Refused(m),
            RequestError::NoAnswer => Error::Timeout("the server did not answer the request"),
            RequestError::Closed => Error::Closed,
        }
    }
}

pub(super) type Outcome = (u32, Result<(), RequestError>);

#[derive(Debug)]
pub(super) struct Requests {
    pending: HashMap<u32, Instant>,
    next: u32,
}

impl Default for Requests {
    fn default() -> Self {
        Self {
            pending: HashMap::new(),
            next: 1,
        }
    }
}

impl Requests {
    /// A fresh request id (never 0, which means "no answer wanted").
    pub fn next_id(&mut self) -> u32 {
        let id = self.next;
        self.next = self.next.wrapping_add(1).max(1);
        id
    }

    pub fn sent(&mut self, id: u32, now: Instant) {
        self.pending.insert(id, now + REQUEST_TIMEOUT);
    }

    /// The outcome of the request the server answered, if it is ours.
    pub fn answered(&mut self, r: &proto::RequestResponse) -> Option<Outcome> {
        if self.pending.remove(&r.request_id).is_none() {
            log::debug!("answer to unknown request {}", r.request_id);
            return None;
        }
        let result = match proto::request_response::Reason::try_from(r.reason) {
            Ok(proto::request_response::Reason::Ok) => Ok(()),
            Ok(reason) if r.message.is_empty() => Err(reason.as_str_name().to_owned()),
            Ok(reason) => Err(format!("{}: {}", reason.as_str_name(), r.message)),
            Err(_) => Err(format!("reason {}: {}", r.reason, r.message)),
        }
        .map_err(RequestError::Refused);
        Some((r.request_id, result))
    }

    /// Requests whose answer is overdue.
    pub fn expired(&mut self, now: Instant) -> Vec<Outcome> {
        let ids: Vec<u32> = self
            .pending
            .iter()
            .filter(|(_, at)| now >= **at)
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter()
            .map(|id| {
                self.pending.remove(&id);
                (id, Err(RequestError::NoAnswer))
            })
            .collect()
    }

    /// Every pending request, failed: the room is over.
    pub fn close(&mut self) -> Vec<Outcome> {
        self.pending
            .drain()
            .map(|(id, _)| (id, Err(RequestError::Closed)))
            .collect()
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.pending.values().min().copied()
    }
}
