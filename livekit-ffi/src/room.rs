//! Room state: who is in the room and what changed, derived from signal messages.
//!
//! Sans-IO: `RoomState` takes the server's `JoinResponse`, `ParticipantUpdate`,
//! `RoomUpdate`, speaker and quality updates and returns the `RoomEvent`s a user
//! sees. The engine owns one and feeds it; the public `Room` reads snapshots.
//!
//! The server announces a participant that publishes nothing only in its periodic
//! batch of updates (every 3 s), and its data often arrives first. Such a sender is
//! learned from its packet (identity and sid) and announced at once; the server's
//! update later fills in its name, metadata, attributes and kind.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use livekit_core::packet;
use livekit_protocol as proto;

use crate::data::ReceivedData;
use crate::state::{ConnectionState, FailureReason};

/// A participant as the room knows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Participant {
    pub sid: String,
    pub identity: String,
    pub name: String,
    pub metadata: String,
    pub attributes: HashMap<String, String>,
    /// `ParticipantInfo.Kind` (standard, ingress, egress, sip, agent...).
    pub kind: i32,
    /// When the participant joined, in milliseconds since the epoch.
    pub joined_at_ms: i64,
    /// `ParticipantInfo.State` (joining, joined, active, disconnected).
    pub state: i32,
    /// `ParticipantInfo.KindDetail`s (cloud agent, forwarded, connector...).
    pub kind_details: Vec<i32>,
    pub permission: Option<proto::ParticipantPermission>,
    /// Published tracks, as the server describes them.
    pub tracks: Vec<proto::TrackInfo>,
    version: u32,
    /// Learned from a data packet; the server has not described it yet.
    provisional: bool,
}

impl Participant {
    pub fn from_info(info: &proto::ParticipantInfo) -> Self {
        Self {
            sid: info.sid.clone(),
            identity: info.identity.clone(),
            name: info.name.clone(),
            metadata: info.metadata.clone(),
            attributes: info.attributes.clone(),
            kind: info.kind,
            joined_at_ms: if info.joined_at_ms > 0 {
                info.joined_at_ms
            } else {
                info.joined_at.saturating_mul(1000)
            },
            state: info.state,
            kind_details: info.kind_details.clone(),
            permission: info.permission.clone(),
            tracks: info.tracks.clone(),
            version: info.version,
            provisional: false,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomInfo {
    pub sid: String,
    pub name: String,
    pub metadata: String,
    pub num_participants: u32,
    pub num_publishers: u32,
    pub max_participants: u32,
    /// Seconds the room stays open empty, and after the last participant left.
    pub empty_timeout: u32,
    pub departure_timeout: u32,
    /// Milliseconds since the epoch.
    pub creation_time_ms: i64,
    pub active_recording: bool,
}

/// Everything a room reports to its user, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomEvent {
    ParticipantConnected(Participant),
    ParticipantDisconnected {
        participant: Participant,
        /// The server's `DisconnectReason` for this participant.
        reason: i32,
    },
    ParticipantMetadataChanged {
        identity: String,
        old: String,
        new: String,
    },
    ParticipantNameChanged {
        identity: String,
        old: String,
        new: String,
    },
    ParticipantAttributesChanged {
        identity: String,
        /// Changed or added keys with their new value; removed keys map to "".
        changed: HashMap<String, String>,
        /// All attributes after the change.
        attributes: HashMap<String, String>,
    },
    RoomMetadataChanged {
        old: String,
        new: String,
    },
    ActiveSpeakersChanged {
        identities: Vec<String>,
    },
    ConnectionQualityChanged {
        identity: String,
        quality: i32,
    },
    ParticipantPermissionChanged {
        identity: String,
        permission: Option<proto::ParticipantPermission>,
    },
    /// A participant became active (ready to receive data).
    ParticipantActive {
        identity: String,
    },
    /// Anything about the room changed (counts, recording, metadata...).
    RoomUpdated(RoomInfo),
    /// The server moved us to another room (its new description).
    Moved(RoomInfo),
    /// A chat message (new, edited or deleted) from `sender`.
    ChatMessage {
        sender: String,
        message: crate::ChatMessage,
    },
    DataReceived(ReceivedData),
    /// A data packet of another kind (RPC, streams, DTMF, transcription...).
    DataPacket(Box<packet::DataPacket>),
    ConnectionStateChanged(ConnectionState),
    Reconnecting,
    Reconnected,
    TokenRefreshed(String),
    /// Participants' full descriptions, replacing what was known (a sender learned
    /// from its data, described by the server at last).
    ParticipantsUpdated(Vec<Participant>),
    /// A call to one of our registered RPC methods; answer it with
    /// [`crate::Room::respond_rpc`].
    RpcInvocation(crate::rpc::RpcInvocation),
    /// Someone began a data stream.
    StreamOpened {
        sender: String,
        kind: crate::stream::StreamKind,
        header: crate::stream::StreamHeader,
    },
    /// The next piece of stream `id`, in order (for text, whole characters).
    StreamChunk {
        id: String,
        content: Vec<u8>,
    },
    /// Stream `id` ended normally, with its trailer's attributes.
    StreamClosed {
        id: String,
        attributes: std::collections::BTreeMap<String, String>,
    },
    /// Stream `id` ended with an error; nothing more comes for it.
    StreamFailed {
        id: String,
        error: crate::stream::StreamError,
    },
    /// A remote participant published a track.
    TrackPublished {
        identity: String,
        track: proto::TrackInfo,
    },
    /// A remote participant's track is gone (after its `TrackUnsubscribed`).
    TrackUnpublished {
        identity: String,
        sid: String,
    },
    /// A track's media arrives: it can be listened to.
    TrackSubscribed {
        identity: String,
        sid: String,
        track: crate::audio::RemoteAudioTrack,
    },
    TrackUnsubscribed {
        identity: String,
        sid: String,
    },
    TrackSubscriptionFailed {
        identity: String,
        sid: String,
        error: String,
    },
    /// A track of anyone (us included) was muted or unmuted.
    TrackMuted {
        identity: String,
        sid: String,
        muted: bool,
    },
    /// One of our tracks is published (the server's description of it).
    LocalTrackPublished(proto::TrackInfo),
    LocalTrackUnpublished {
        sid: String,
    },
    /// Someone subscribed to one of our tracks.
    LocalTrackSubscribed {
        sid: String,
    },
    /// The room is gone; `reason` is `None` when we left on our own.
    Disconnected {
        reason: FailureReason,
    },
}

#[derive(Debug, Clone, Default)]
pub struct RoomState {
    pub room: RoomInfo,
    pub local: Participant,
    /// Remote participants by identity.
    pub remotes: HashMap<String, Participant>,
    /// Our published tracks (kept by the engine, read by the user).
    pub local_tracks: Vec<proto::TrackInfo>,
    /// Remote tracks we receive, by sid (kept by the engine).
    pub subscribed: HashMap<String, crate::audio::RemoteAudioTrack>,
    speakers: Vec<(String, f32)>,
    /// Who left lately (identity to sid and when): their late packets must not bring
    /// them back.
    departed: HashMap<String, (String, Instant)>,
}

/// How long a participant that left is remembered against its late packets.
const DEPARTED_MEMORY: Duration = Duration::from_secs(30);

impl RoomState {
    pub fn from_join(join: &proto::JoinResponse) -> Self {
        let mut s = Self::default();
        if let Some(room) = &join.room {
            s.room = room_info(room);
        }
        if let Some(p) = &join.participant {
            s.local = Participant::from_info(p);
        }
        for p in &join.other_participants {
            s.remotes
                .insert(p.identity.clone(), Participant::from_info(p));
        }
        s
    }

    /// The events of a signal message about the room or its participants (others
    /// are not the room's business and give none).
    pub fn on_signal(
        &mut self,
        m: proto::signal_response::Message,
        now: Instant,
    ) -> Vec<RoomEvent> {
        use proto::signal_response::Message as Resp;
        match m {
            Resp::Update(u) => self.on_participant_update(&u.participants, now),
            Resp::RoomUpdate(u) => match u.room {
                Some(room) => self.on_room_update(&room),
                None => vec![],
            },
            Resp::SpeakersChanged(sp) => self.on_speakers_changed(&sp.speakers),
            Resp::ConnectionQuality(q) => self.on_connection_quality(&q.updates),
            Resp::RoomMoved(m) => self.on_moved(m),
            other => {
                log::trace!("unhandled signal message: {other:?}");
                vec![]
            }
        }
    }

    /// The sender of a packet, announced at once if the room does not know it yet:
    /// `Some(ParticipantConnected)` for a newcomer. Senders that left lately are not
    /// brought back by their late packets.
    pub fn learn_sender(&mut self, identity: &str, sid: &str, now: Instant) -> Option<RoomEvent> {
        if identity.is_empty() || identity == self.local.identity {
            return None;
        }
        if self.remotes.contains_key(identity) {
            return None;
        }
        self.departed
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < DEPARTED_MEMORY);
        if let Some((gone, _)) = self.departed.get(identity) {
            if sid.is_empty() || sid == gone {
                return None;
            }
        }
        let p = Participant {
            sid: sid.to_owned(),
            identity: identity.to_owned(),
            provisional: true,
            ..Default::default()
        };
        self.remotes.insert(identity.to_owned(), p.clone());
        Some(RoomEvent::ParticipantConnected(p))
    }

    fn forget(&mut self, identity: &str, now: Instant) -> Option<Participant> {
        let p = self.remotes.remove(identity)?;
        self.departed
            .insert(identity.to_owned(), (p.sid.clone(), now));
        Some(p)
    }

    /// The server moved us to another room: the participants there replace the
    /// ones here (each change reported), then `Moved` with the new room.
    fn on_moved(&mut self, m: proto::RoomMovedResponse) -> Vec<RoomEvent> {
        let join = proto::JoinResponse {
            room: m.room,
            participant: m.participant,
            other_participants: m.other_participants,
            ..Default::default()
        };
        let mut events = self.resync(&join);
        events.push(RoomEvent::Moved(self.room.clone()));
        events
    }

    /// After a full rejoin: reconcile with the new join answer and report the difference.
    pub fn resync(&mut self, join: &proto::JoinResponse) -> Vec<RoomEvent> {
        let fresh = Self::from_join(join);
        let mut events = Vec::new();
        for (identity, p) in &self.remotes {
            if !fresh.remotes.contains_key(identity) {
                events.extend(unpublished_all(p));
                events.push(RoomEvent::ParticipantDisconnected {
                    participant: p.clone(),
                    reason: 0,
                });
            }
        }
        for (identity, p) in &fresh.remotes {
            match self.remotes.get(identity) {
                None => {
                    events.push(RoomEvent::ParticipantConnected(p.clone()));
                    events.extend(published_all(p));
                }
                Some(old) => {
                    events.extend(changes(old, p));
                    events.extend(track_changes(old, p));
                }
            }
        }
        events.extend(changes(&self.local, &fresh.local));
        if self.room.metadata != fresh.room.metadata {
            events.push(RoomEvent::RoomMetadataChanged {
                old: self.room.metadata.clone(),
                new: fresh.room.metadata.clone(),
            });
        }
        let local_tracks = std::mem::take(&mut self.local_tracks);
        let subscribed = std::mem::take(&mut self.subscribed);
        *self = fresh;
        self.local_tracks = local_tracks;
        self.subscribed = subscribed;
        events
    }

    pub fn on_participant_update(
        &mut self,
        infos: &[proto::ParticipantInfo],
        now: Instant,
    ) -> Vec<RoomEvent> {
        let mut events = Vec::new();
        for info in infos {
            if info.sid == self.local.sid || info.identity == self.local.identity {
                if info.sid != self.local.sid {
                    // An update about another session of our identity (e.g. the one that
                    // replaced us); not ours to apply.
                    continue;
                }
                let new = Participant::from_info(info);
                if new.version < self.local.version {
                    continue;
                }
                events.extend(changes(&self.local, &new));
                self.local = new;
                continue;
            }
            let disconnected = info.state == proto::participant_info::State::Disconnected as i32;
            log::debug!(
                "participant update: {} {} state {} version {}",
                info.identity,
                info.sid,
                info.state,
                info.version
            );
            match self.remotes.get(&info.identity) {
                Some(old) if old.sid == info.sid && info.version < old.version => {}
                Some(old) if disconnected => {
                    if old.sid == info.sid || info.sid.is_empty() || old.sid.is_empty() {
                        if let Some(p) = self.forget(&info.identity, now) {
                            events.extend(unpublished_all(&p));
                            events.push(RoomEvent::ParticipantDisconnected {
                                participant: p,
                                reason: info.disconnect_reason,
                            });
                        }
                    }
                }
                // A sender learned from its data, described at last: no second
                // announcement, only its full description.
                Some(old) if old.provisional && (old.sid.is_empty() || old.sid == info.sid) => {
                    let new = Participant::from_info(info);
                    self.remotes.insert(info.identity.clone(), new.clone());
                    let active = new.state == proto::participant_info::State::Active as i32;
                    events.push(RoomEvent::ParticipantsUpdated(vec![new.clone()]));
                    if active {
                        events.push(RoomEvent::ParticipantActive {
                            identity: info.identity.clone(),
                        });
                    }
                    events.extend(published_all(&new));
                }
                Some(old) if old.sid != info.sid => {
                    // Same identity, new session: the old one is gone.
                    let new = Participant::from_info(info);
                    if let Some(p) = self.remotes.insert(info.identity.clone(), new.clone()) {
                        events.extend(unpublished_all(&p));
                        events.push(RoomEvent::ParticipantDisconnected {
                            participant: p,
                            reason: proto::DisconnectReason::DuplicateIdentity as i32,
                        });
                    }
                    let published = published_all(&new);
                    events.push(RoomEvent::ParticipantConnected(new));
                    events.extend(published);
                }
                Some(old) => {
                    let new = Participant::from_info(info);
                    events.extend(changes(old, &new));
                    events.extend(track_changes(old, &new));
                    self.remotes.insert(info.identity.clone(), new);
                }
                None if disconnected => {}
                None => {
                    let new = Participant::from_info(info);
                    self.remotes.insert(info.identity.clone(), new.clone());
                    let published = published_all(&new);
                    events.push(RoomEvent::ParticipantConnected(new));
                    events.extend(published);
                }
            }
        }
        events
    }

    pub fn on_room_update(&mut self, room: &proto::Room) -> Vec<RoomEvent> {
        let mut new = room_info(room);
        let mut events = Vec::new();
        if new.metadata != self.room.metadata {
            events.push(RoomEvent::RoomMetadataChanged {
                old: self.room.metadata.clone(),
                new: new.metadata.clone(),
            });
        }
        if new.sid.is_empty() {
            new.sid = self.room.sid.clone();
        }
        self.room = new;
        events.push(RoomEvent::RoomUpdated(self.room.clone()));
        events
    }

    fn identity_of(&self, sid: &str) -> Option<String> {
        if self.local.sid == sid {
            return Some(self.local.identity.clone());
        }
        self.remotes
            .values()
            .find(|p| p.sid == sid)
            .map(|p| p.identity.clone())
    }

    /// Speaker updates carry changes only; keep the active set, loudest first.
    pub fn on_speakers_changed(&mut self, speakers: &[proto::SpeakerInfo]) -> Vec<RoomEvent> {
        for s in speakers {
            let Some(identity) = self.identity_of(&s.sid) else {
                continue;
            };
            self.speakers.retain(|(i, _)| *i != identity);
            if s.active {
                self.speakers.push((identity, s.level));
            }
        }
        self.speakers
            .sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
        vec![RoomEvent::ActiveSpeakersChanged {
            identities: self.speakers.iter().map(|(i, _)| i.clone()).collect(),
        }]
    }

    pub fn on_connection_quality(
        &mut self,
        updates: &[proto::ConnectionQualityInfo],
    ) -> Vec<RoomEvent> {
        updates
            .iter()
            .filter_map(|u| {
                self.identity_of(&u.participant_sid).map(|identity| {
                    RoomEvent::ConnectionQualityChanged {
                        identity,
                        quality: u.quality,
                    }
                })
            })
            .collect()
    }

    /// The participant that published track `sid`, with the track.
    pub fn track(&self, sid: &str) -> Option<(&Participant, &proto::TrackInfo)> {
        self.remotes
            .values()
            .find_map(|p| p.tracks.iter().find(|t| t.sid == sid).map(|t| (p, t)))
    }

    pub fn active_speakers(&self) -> Vec<String> {
        self.speakers.iter().map(|(i, _)| i.clone()).collect()
    }
}

fn room_info(room: &proto::Room) -> RoomInfo {
    RoomInfo {
        sid: room.sid.clone(),
        name: room.name.clone(),
        metadata: room.metadata.clone(),
        num_participants: room.num_participants,
        num_publishers: room.num_publishers,
        max_participants: room.max_participants,
        empty_timeout: room.empty_timeout,
        departure_timeout: room.departure_timeout,
        creation_time_ms: if room.creation_time_ms > 0 {
            room.creation_time_ms
        } else {
            room.creation_time.saturating_mul(1000)
        },
        active_recording: room.active_recording,
    }
}

fn published_all(p: &Participant) -> Vec<RoomEvent> {
    p.tracks
        .iter()
        .map(|t| RoomEvent::TrackPublished {
            identity: p.identity.clone(),
            track: t.clone(),
        })
        .collect()
}

fn unpublished_all(p: &Participant) -> Vec<RoomEvent> {
    p.tracks
        .iter()
        .map(|t| RoomEvent::TrackUnpublished {
            identity: p.identity.clone(),
            sid: t.sid.clone(),
        })
        .collect()
}

/// A remote participant's tracks that came, went, or were muted or unmuted.
fn track_changes(old: &Participant, new: &Participant) -> Vec<RoomEvent> {
    let mut events = Vec::new();
    for t in &old.tracks {
        if !new.tracks.iter().any(|n| n.sid == t.sid) {
            events.push(RoomEvent::TrackUnpublished {
                identity: new.identity.clone(),
                sid: t.sid.clone(),
            });
        }
    }
    for t in &new.tracks {
        match old.tracks.iter().find(|o| o.sid == t.sid) {
            None => events.push(RoomEvent::TrackPublished {
                identity: new.identity.clone(),
                track: t.clone(),
            }),
            Some(o) if o.muted != t.muted => events.push(RoomEvent::TrackMuted {
                identity: new.identity.clone(),
                sid: t.sid.clone(),
                muted: t.muted,
            }),
            Some(_) => {}
        }
    }
    events
}

fn changes(old: &Participant, new: &Participant) -> Vec<RoomEvent> {
    let mut events = Vec::new();
    if old.metadata != new.metadata {
        events.push(RoomEvent::ParticipantMetadataChanged {
            identity: new.identity.clone(),
            old: old.metadata.clone(),
            new: new.metadata.clone(),
        });
    }
    if old.name != new.name {
        events.push(RoomEvent::ParticipantNameChanged {
            identity: new.identity.clone(),
            old: old.name.clone(),
            new: new.name.clone(),
        });
    }
    let mut changed: HashMap<String, String> = new
        .attributes
        .iter()
        .filter(|(k, v)| old.attributes.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for k in old.attributes.keys() {
        if !new.attributes.contains_key(k) {
            changed.insert(k.clone(), String::new());
        }
    }
    if !changed.is_empty() {
        events.push(RoomEvent::ParticipantAttributesChanged {
            identity: new.identity.clone(),
            changed,
            attributes: new.attributes.clone(),
        });
    }
    if old.permission != new.permission && new.permission.is_some() {
        events.push(RoomEvent::ParticipantPermissionChanged {
            identity: new.identity.clone(),
            permission: new.permission.clone(),
        });
    }
    let active = proto::participant_info::State::Active as i32;
    if old.state != active && new.state == active {
        events.push(RoomEvent::ParticipantActive {
            identity: new.identity.clone(),
        });
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(sid: &str, identity: &str, version: u32) -> proto::ParticipantInfo {
        proto::ParticipantInfo {
            sid: sid.into(),
            identity: identity.into(),
            version,
            state: proto::participant_info::State::Active as i32,
            ..Default::default()
        }
    }

    fn joined() -> RoomState {
        RoomState::from_join(&proto::JoinResponse {
            room: Some(proto::Room {
                sid: "RM_1".into(),
                name: "r".into(),
                ..Default::default()
            }),
            participant: Some(info("PA_me", "me", 1)),
            other_participants: vec![info("PA_a", "a", 1)],
            ..Default::default()
        })
    }

    #[test]
    fn a_move_replaces_the_participants_then_reports_the_new_room() {
        let mut s = joined();
        let moved = proto::RoomMovedResponse {
            room: Some(proto::Room {
                sid: "RM_2".into(),
                name: "other".into(),
                ..Default::default()
            }),
            token: "t2".into(),
            participant: Some(info("PA_me2", "me", 1)),
            other_participants: vec![info("PA_c", "c", 1)],
        };
        let ev = s.on_signal(
            proto::signal_response::Message::RoomMoved(moved),
            Instant::now(),
        );
        assert!(
            matches!(&ev[0], RoomEvent::ParticipantDisconnected { participant, .. } if participant.identity == "a")
        );
        assert!(matches!(&ev[1], RoomEvent::ParticipantConnected(p) if p.identity == "c"));
        assert!(
            matches!(ev.last(), Some(RoomEvent::Moved(r)) if r.name == "other" && r.sid == "RM_2")
        );
        assert_eq!(s.local.sid, "PA_me2");
    }

    #[test]
    fn joins_leaves_and_changes_become_events() {
        let mut s = joined();
        let ev = s.on_participant_update(&[info("PA_b", "b", 1)], Instant::now());
        assert!(matches!(&ev[..], [RoomEvent::ParticipantConnected(p)] if p.identity == "b"));

        let mut a = info("PA_a", "a", 2);
        a.metadata = "m".into();
        a.name = "Alice".into();
        a.attributes.insert("k".into(), "v".into());
        let ev = s.on_participant_update(&[a.clone()], Instant::now());
        assert_eq!(ev.len(), 3, "{ev:?}");
        assert!(ev.contains(&RoomEvent::ParticipantMetadataChanged {
            identity: "a".into(),
            old: "".into(),
            new: "m".into()
        }));

        // An older version is ignored.
        assert!(s
            .on_participant_update(&[info("PA_a", "a", 1)], Instant::now())
            .is_empty());

        let mut gone = info("PA_a", "a", 3);
        gone.state = proto::participant_info::State::Disconnected as i32;
        let ev = s.on_participant_update(&[gone], Instant::now());
        assert!(
            matches!(&ev[..], [RoomEvent::ParticipantDisconnected { participant, .. }] if participant.identity == "a")
        );
        assert!(!s.remotes.contains_key("a"));
    }

    #[test]
    fn removed_attributes_are_reported_empty() {
        let mut s = joined();
        let mut me = info("PA_me", "me", 2);
        me.attributes.insert("x".into(), "1".into());
        s.on_participant_update(&[me], Instant::now());
        let ev = s.on_participant_update(&[info("PA_me", "me", 3)], Instant::now());
        let RoomEvent::ParticipantAttributesChanged {
            identity, changed, ..
        } = &ev[0]
        else {
            panic!("{ev:?}")
        };
        assert_eq!(identity, "me");
        assert_eq!(changed.get("x").map(String::as_str), Some(""));
    }

    #[test]
    fn resync_reports_the_difference() {
        let mut s = joined();
        let ev = s.resync(&proto::JoinResponse {
            participant: Some(info("PA_me2", "me", 1)),
            other_participants: vec![info("PA_c", "c", 1)],
            ..Default::default()
        });
        assert_eq!(ev.len(), 2, "{ev:?}");
        assert!(s.remotes.contains_key("c") && !s.remotes.contains_key("a"));
    }

    #[test]
    fn senders_learned_from_data_are_filled_in_not_announced_twice() {
        let mut s = joined();
        let now = Instant::now();
        assert!(s.learn_sender("me", "PA_me", now).is_none(), "ourselves");
        assert!(s.learn_sender("", "", now).is_none());
        let ev = s.learn_sender("dan", "PA_d", now);
        assert!(
            matches!(ev, Some(RoomEvent::ParticipantConnected(p)) if p.identity == "dan" && p.sid == "PA_d")
        );
        assert!(s.learn_sender("dan", "PA_d", now).is_none(), "known now");
        let mut full = info("PA_d", "dan", 1);
        full.name = "Dan".into();
        let ev = s.on_participant_update(&[full], now);
        assert!(matches!(
            &ev[..],
            [RoomEvent::ParticipantsUpdated(ps), RoomEvent::ParticipantActive { .. }] if ps[0].name == "Dan"
        ));
        // A provisional sender from another session is replaced like any other.
        assert!(s.learn_sender("eve", "PA_e1", now).is_some());
        let ev = s.on_participant_update(&[info("PA_e2", "eve", 1)], now);
        assert!(
            matches!(&ev[..], [RoomEvent::ParticipantDisconnected { .. }, RoomEvent::ParticipantConnected(p)] if p.sid == "PA_e2")
        );
        // Once gone, late packets do not bring a participant back for a while.
        let mut gone = info("PA_d", "dan", 2);
        gone.state = proto::participant_info::State::Disconnected as i32;
        s.on_participant_update(&[gone], now);
        assert!(s.learn_sender("dan", "PA_d", now).is_none());
        assert!(s.learn_sender("dan", "", now).is_none());
        // A new session of the same identity is someone new.
        assert!(s.learn_sender("dan", "PA_d2", now).is_some());
        let later = now + DEPARTED_MEMORY;
        let mut gone = info("PA_d2", "dan", 1);
        gone.state = proto::participant_info::State::Disconnected as i32;
        s.on_participant_update(&[gone], now);
        assert!(
            s.learn_sender("dan", "PA_d2", later).is_some(),
            "forgotten after a while"
        );
    }

    #[test]
    fn permissions_activity_and_room_updates_become_events() {
        let mut s = joined();
        let now = Instant::now();
        let mut a = info("PA_a", "a", 2);
        a.state = proto::participant_info::State::Joined as i32;
        s.on_participant_update(&[a.clone()], now);
        a.version = 3;
        a.state = proto::participant_info::State::Active as i32;
        a.permission = Some(proto::ParticipantPermission {
            can_publish_data: true,
            ..Default::default()
        });
        let ev = s.on_participant_update(&[a], now);
        assert!(ev.iter().any(|e| matches!(e, RoomEvent::ParticipantPermissionChanged { identity, permission: Some(p) } if identity == "a" && p.can_publish_data)));
        assert!(ev
            .iter()
            .any(|e| matches!(e, RoomEvent::ParticipantActive { identity } if identity == "a")));
        let ev = s.on_room_update(&proto::Room {
            name: "r".into(),
            num_participants: 2,
            num_publishers: 1,
            creation_time: 1_700_000_000,
            active_recording: true,
            ..Default::default()
        });
        assert!(
            matches!(&ev[..], [RoomEvent::RoomUpdated(r)] if r.num_participants == 2 && r.sid == "RM_1" && r.creation_time_ms == 1_700_000_000_000 && r.active_recording)
        );
    }

    #[test]
    fn speakers_are_tracked_loudest_first() {
        let mut s = joined();
        let ev = s.on_speakers_changed(&[
            proto::SpeakerInfo {
                sid: "PA_a".into(),
                level: 0.2,
                active: true,
            },
            proto::SpeakerInfo {
                sid: "PA_me".into(),
                level: 0.9,
                active: true,
            },
        ]);
        assert_eq!(
            ev,
            vec![RoomEvent::ActiveSpeakersChanged {
                identities: vec!["me".into(), "a".into()]
            }]
        );
        s.on_speakers_changed(&[proto::SpeakerInfo {
            sid: "PA_me".into(),
            level: 0.0,
            active: false,
        }]);
        assert_eq!(s.active_speakers(), vec!["a".to_string()]);
    }
}
