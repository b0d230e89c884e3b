//! The engine's tracks, without I/O: ours (asked for, published, muted, carried
//! again by a new session) and the others' we receive (which media carries which
//! track, and media that arrived before the server described its track).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use livekit_protocol as proto;

use crate::audio::RemoteAudioTrack;

/// How long the server may take to accept a track.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("the room is not connected")]
    NotConnected,
    #[error("the server did not accept the track within {0:?}")]
    Timeout(Duration),
    #[error("a track with this id is already published")]
    Duplicate,
    #[error("the room was closed")]
    Closed,
}

/// One of our tracks.
#[derive(Debug, Clone)]
pub struct LocalPublication {
    pub request: proto::AddTrackRequest,
    /// The server's description, once it accepted the track.
    pub info: Option<proto::TrackInfo>,
    /// When the server must have answered `request`.
    deadline: Option<Instant>,
}

/// A track we receive.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub identity: String,
    pub mid: String,
    pub track: RemoteAudioTrack,
}

#[derive(Debug, Default)]
pub struct Tracks {
    /// Ours, by cid.
    pub local: HashMap<String, LocalPublication>,
    /// Received tracks, by sid.
    pub subscribed: HashMap<String, Subscription>,
    /// Media for tracks the server has not described yet, by sid.
    pub early: HashMap<String, (String, RemoteAudioTrack)>,
}

impl Tracks {
    /// Asks the server for a track; `Err` if it is ours already.
    pub fn publish(
        &mut self,
        now: Instant,
        request: proto::AddTrackRequest,
    ) -> Result<(), PublishError> {
        if self.local.contains_key(&request.cid) {
            return Err(PublishError::Duplicate);
        }
        self.local.insert(
            request.cid.clone(),
            LocalPublication {
                request,
                info: None,
                deadline: Some(now + PUBLISH_TIMEOUT),
            },
        );
        Ok(())
    }

    /// The server accepted track `cid`: its description, and whether it was a
    /// first publication (`false`: carried again by a new session).
    pub fn published(&mut self, cid: &str, info: proto::TrackInfo) -> Option<bool> {
        let p = self.local.get_mut(cid)?;
        p.deadline = None;
        let first = p.info.is_none();
        p.info = Some(info);
        Some(first)
    }

    /// Publications the server never answered: removed and returned (cids).
    pub fn expired(&mut self, now: Instant) -> Vec<String> {
        let gone: Vec<String> = self
            .local
            .iter()
            .filter(|(_, p)| p.deadline.is_some_and(|d| now >= d) && p.info.is_none())
            .map(|(cid, _)| cid.clone())
            .collect();
        for cid in &gone {
            self.local.remove(cid);
        }
        // A republication that is not answered is asked for again by the next session.
        for p in self.local.values_mut() {
            if p.deadline.is_some_and(|d| now >= d) {
                p.deadline = None;
            }
        }
        gone
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.local.values().filter_map(|p| p.deadline).min()
    }

    /// The cid of our track `sid`.
    pub fn local_cid(&self, sid: &str) -> Option<String> {
        self.local
            .iter()
            .find(|(_, p)| p.info.as_ref().is_some_and(|i| i.sid == sid))
            .map(|(cid, _)| cid.clone())
    }

    pub fn set_muted(&mut self, sid: &str, muted: bool) -> bool {
        for p in self.local.values_mut() {
            if let Some(info) = p.info.as_mut().filter(|i| i.sid == sid) {
                info.muted = muted;
                p.request.muted = muted;
                return true;
            }
        }
        false
    }

    /// A new session: every published track is asked for again (same cid).
    pub fn republish(&mut self, now: Instant) -> Vec<proto::AddTrackRequest> {
        self.local
            .values_mut()
            .map(|p| {
                p.deadline = Some(now + PUBLISH_TIMEOUT);
                // A new track for the new session (a sid would name the old one).
                proto::AddTrackRequest {
                    sid: String::new(),
                    ..p.request.clone()
                }
            })
            .collect()
    }

    /// The subscription carried by media `mid`.
    pub fn by_mid(&self, mid: &str) -> Option<String> {
        self.subscribed
            .iter()
            .find(|(_, s)| s.mid == mid)
            .map(|(sid, _)| sid.clone())
    }
}
