//! The engine's decisions as a state machine with no I/O and no clock of its own.
//!
//! It is fed what happened (a signal message, a peer event, the answer to an action,
//! a user command) with the time `now`, and answers with actions for the driver to
//! carry out, in order, and the next instant it wants to be woken at. Here live the
//! session's phases (join, resume, rejoin, leave) and the choice between resuming
//! and rejoining when a session is lost; [`super::transport`] routes negotiation per
//! transport, [`super::media`] keeps our publications and received tracks, [`super::requests`] correlates
//! requests with answers. Tests drive it with recorded signal traces.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use livekit_protocol as proto;
use proto::signal_request::Message as Req;
use proto::signal_response::Message as Resp;

use super::io::{Action, Input};
use super::media::{PublishError, Tracks};
use super::requests::{RequestError, Requests};
use super::transport::Transports;
use super::watch::{Due, LossWatch};
use super::{RoomOptions, Shared};
use crate::data::{DataKind, DataReceiver, Incoming};
use crate::error::Error;
use crate::peer::{PeerEvent, PeerRole};
use crate::room::{RoomEvent, RoomState};
use crate::signal::Resume;
use crate::state::{ConnectionState, FailureReason, LeaveAction};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rejoin {
    attempt: u32,
    started: Instant,
}

#[derive(Debug)]
enum Phase {
    /// Opening a session: the first join (`rejoin` None) or a rejoin attempt.
    /// `deadline` is set once the server answered the join.
    Establishing {
        rejoin: Option<Rejoin>,
        deadline: Option<Instant>,
        join: Option<Box<proto::JoinResponse>>,
    },
    Connected,
    /// Resuming the session: the same participant on a new signal connection.
    Resuming {
        deadline: Instant,
        last_seq: Option<u32>,
    },
    /// Waiting before rejoin attempt `rejoin.attempt`.
    Backoff {
        rejoin: Rejoin,
        at: Instant,
    },
    Closed,
}

pub struct Engine {
    options: RoomOptions,
    shared: Arc<Shared>,
    phase: Phase,
    t: Transports,
    signal_open: bool,
    actions: VecDeque<Action>,
    /// Signal messages and data that arrived before the session was ready.
    backlog: Vec<Input>,
    receiver: DataReceiver,
    watch: LossWatch,
    /// Whether `Reconnecting` was reported for the current loss.
    announced_reconnecting: bool,
    requests: Requests,
    tracks: Tracks,
}

impl Engine {
    /// A room that starts joining now.
    pub fn new(options: RoomOptions, shared: Arc<Shared>) -> Self {
        let mut e = Self {
            options,
            shared,
            phase: Phase::Establishing {
                rejoin: None,
                deadline: None,
                join: None,
            },
            t: Transports::new(false),
            signal_open: false,
            actions: VecDeque::new(),
            backlog: Vec::new(),
            receiver: DataReceiver::default(),
            watch: LossWatch::default(),
            announced_reconnecting: false,
            requests: Requests::default(),
            tracks: Tracks::default(),
        };
        e.act(Action::OpenSignal { resume: None });
        e
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// When the engine wants [`Engine::handle_timeout`] at the latest.
    pub fn deadline(&self) -> Option<Instant> {
        let phase = match &self.phase {
            Phase::Establishing { deadline, .. } => *deadline,
            Phase::Resuming { deadline, .. } => Some(*deadline),
            Phase::Backoff { at, .. } => Some(*at),
            Phase::Connected | Phase::Closed => None,
        };
        [
            phase,
            self.watch.deadline(),
            self.requests.deadline(),
            self.tracks.deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn act(&mut self, a: Action) {
        self.actions.push_back(a);
    }

    fn emit(&mut self, ev: RoomEvent) {
        let mut after = vec![];
        match &ev {
            RoomEvent::ParticipantDisconnected { participant, .. } => {
                after = self.shared.participant_left(&participant.identity)
            }
            // A track that goes is unsubscribed first.
            RoomEvent::TrackUnpublished { sid, .. } => self.unsubscribed(sid),
            // Media that came before the track's description is subscribed now.
            RoomEvent::TrackPublished { identity, track } => {
                if let Some((mid, remote)) = self.tracks.early.remove(&track.sid) {
                    after.push(self.subscribed(identity.clone(), track.sid.clone(), mid, remote));
                }
            }
            _ => {}
        }
        self.act(Action::Emit(ev));
        for ev in after {
            self.act(Action::Emit(ev));
        }
    }

    // ---- tracks --------------------------------------------------------------------

    /// Asks the server to publish a track of ours; the answer comes as
    /// [`Action::PublishDone`].
    pub fn publish(&mut self, now: Instant, request: proto::AddTrackRequest) {
        let cid = request.cid.clone();
        if !self.signal_open || !matches!(self.phase, Phase::Connected) {
            return self.act(Action::PublishDone {
                cid,
                result: Err(PublishError::NotConnected),
            });
        }
        if let Err(e) = self.tracks.publish(now, request.clone()) {
            return self.act(Action::PublishDone {
                cid,
                result: Err(e),
            });
        }
        self.act(Action::SendSignal(Box::new(Req::AddTrack(request))));
    }

    /// The cid of our track `sid`.
    pub fn local_cid(&self, sid: &str) -> Option<String> {
        self.tracks.local_cid(sid)
    }

    /// Stops publishing our track `sid`; `false` if it is not ours.
    pub fn unpublish(&mut self, sid: &str) -> bool {
        let Some(cid) = self.tracks.local_cid(sid) else {
            return false;
        };
        self.tracks.local.remove(&cid);
        self.sync_local_tracks();
        self.act(Action::StopSending { cid, forget: true });
        self.t.renegotiate(&mut self.actions);
        self.emit(RoomEvent::LocalTrackUnpublished {
            sid: sid.to_owned(),
        });
        true
    }

    /// Mutes or unmutes our track `sid` (the driver stops its audio); `false` if it
    /// is not ours.
    pub fn mute(&mut self, sid: &str, muted: bool) -> bool {
        if !self.tracks.set_muted(sid, muted) {
            return false;
        }
        self.sync_local_tracks();
        self.act(Action::SendSignal(Box::new(Req::Mute(
            proto::MuteTrackRequest {
                sid: sid.to_owned(),
                muted,
            },
        ))));
        let identity = self.shared.identity();
        self.emit(RoomEvent::TrackMuted {
            identity,
            sid: sid.to_owned(),
            muted,
        });
        true
    }

    fn sync_local_tracks(&mut self) {
        let tracks = self
            .tracks
            .local
            .values()
            .filter_map(|p| p.info.clone())
            .collect();
        self.shared.state.lock().local_tracks = tracks;
    }

    /// Answers from the server about our tracks; `false` for other messages.
    fn on_track_signal(&mut self, m: &Resp) -> bool {
        match m {
            Resp::TrackPublished(r) => {
                log::debug!("the server published track {}", r.cid);
                let Some(info) = r.track.clone() else {
                    return true;
                };
                let Some(first) = self.tracks.published(&r.cid, info.clone()) else {
                    log::warn!("the server published a track we did not ask for: {}", r.cid);
                    return true;
                };
                self.sync_local_tracks();
                self.act(Action::StartSending { cid: r.cid.clone() });
                self.t.renegotiate(&mut self.actions);
                if first {
                    self.act(Action::PublishDone {
                        cid: r.cid.clone(),
                        result: Ok(info.clone()),
                    });
                    self.emit(RoomEvent::LocalTrackPublished(info));
                }
            }
            Resp::TrackUnpublished(r) => {
                if let Some(cid) = self.tracks.local_cid(&r.track_sid) {
                    self.tracks.local.remove(&cid);
                    self.sync_local_tracks();
                    self.act(Action::StopSending { cid, forget: true });
                    self.t.renegotiate(&mut self.actions);
                    self.emit(RoomEvent::LocalTrackUnpublished {
                        sid: r.track_sid.clone(),
                    });
                }
            }
            Resp::Mute(r) => {
                if let Some(cid) = self.tracks.local_cid(&r.sid) {
                    self.tracks.set_muted(&r.sid, r.muted);
                    self.sync_local_tracks();
                    self.act(Action::MuteLocal {
                        cid,
                        muted: r.muted,
                    });
                    let identity = self.shared.identity();
                    self.emit(RoomEvent::TrackMuted {
                        identity,
                        sid: r.sid.clone(),
                        muted: r.muted,
                    });
                }
            }
            Resp::TrackSubscribed(t) => self.emit(RoomEvent::LocalTrackSubscribed {
                sid: t.track_sid.clone(),
            }),
            Resp::SubscriptionResponse(r) if r.err != 0 => {
                let identity = self
                    .shared
                    .state
                    .lock()
                    .track(&r.track_sid)
                    .map(|(p, _)| p.identity.clone())
                    .unwrap_or_default();
                let error = proto::SubscriptionError::try_from(r.err)
                    .map(|e| e.as_str_name().to_owned())
                    .unwrap_or_else(|_| format!("subscription error {}", r.err));
                self.emit(RoomEvent::TrackSubscriptionFailed {
                    identity,
                    sid: r.track_sid.clone(),
                    error,
                });
            }
            _ => return false,
        }
        true
    }

    /// Media `mid` of the subscriber began (`Some`) or stopped carrying track `sid`.
    fn on_remote_audio(
        &mut self,
        mid: String,
        sid: String,
        track: Option<crate::audio::RemoteAudioTrack>,
    ) {
        // Who publishes what is known once the join completes: until then, wait.
        if matches!(self.phase, Phase::Establishing { .. }) {
            self.backlog.push(Input::RemoteAudio { mid, sid, track });
            return;
        }
        if let Some(old) = self.tracks.by_mid(&mid) {
            self.unsubscribed(&old);
        }
        self.tracks.early.retain(|_, (m, _)| *m != mid);
        let Some(track) = track else { return };
        let identity = self
            .shared
            .state
            .lock()
            .track(&sid)
            .map(|(p, _)| p.identity.clone());
        match identity {
            Some(identity) => {
                let ev = self.subscribed(identity, sid, mid, track);
                self.act(Action::Emit(ev));
            }
            None => {
                log::debug!("media for {sid} before its publication");
                self.tracks.early.insert(sid, (mid, track));
            }
        }
    }

    fn subscribed(
        &mut self,
        identity: String,
        sid: String,
        mid: String,
        track: crate::audio::RemoteAudioTrack,
    ) -> RoomEvent {
        log::debug!("subscribed to {sid} of {identity}");
        self.shared
            .state
            .lock()
            .subscribed
            .insert(sid.clone(), track.clone());
        self.tracks.subscribed.insert(
            sid.clone(),
            super::media::Subscription {
                identity: identity.clone(),
                mid,
                track: track.clone(),
            },
        );
        RoomEvent::TrackSubscribed {
            identity,
            sid,
            track,
        }
    }

    /// Track `sid` is no longer received: its decoding ends, its listeners see the end.
    fn unsubscribed(&mut self, sid: &str) {
        if let Some(s) = self.tracks.subscribed.remove(sid) {
            self.shared.state.lock().subscribed.remove(sid);
            s.track.end();
            self.act(Action::Emit(RoomEvent::TrackUnsubscribed {
                identity: s.identity,
                sid: sid.to_owned(),
            }));
        }
    }

    /// The session's media is gone: every subscription ends.
    fn unsubscribe_all(&mut self) {
        let sids: Vec<String> = self.tracks.subscribed.keys().cloned().collect();
        for sid in sids {
            self.unsubscribed(&sid);
        }
        for (_, (_, track)) in self.tracks.early.drain() {
            track.end();
        }
    }

    /// Sends a metadata update and returns its request id; its answer comes as
    /// [`Action::RequestDone`].
    pub fn request_update(
        &mut self,
        now: Instant,
        mut req: proto::UpdateParticipantMetadata,
    ) -> u32 {
        let id = self.requests.next_id();
        if !self.signal_open || !matches!(self.phase, Phase::Connected | Phase::Resuming { .. }) {
            self.act(Action::RequestDone {
                id,
                result: Err(RequestError::NotConnected),
            });
            return id;
        }
        req.request_id = id;
        self.requests.sent(id, now);
        self.act(Action::SendSignal(Box::new(Req::UpdateMetadata(req))));
        id
    }

    pub fn handle_input(&mut self, now: Instant, input: Input) {
        if self.is_closed() {
            return;
        }
        match input {
            Input::Leave => self.leave(),
            Input::Joined(join) => self.on_joined(now, join),
            Input::Resumed(answer) => self.on_resumed(answer),
            Input::SignalFailed(e) => {
                self.signal_open = false;
                self.fail(
                    now,
                    e.failure_reason(),
                    e.to_string(),
                    LeaveAction::Reconnect,
                );
            }
            Input::SignalClosed { reason, message } => {
                self.signal_open = false;
                self.fail(now, reason, message, LeaveAction::Resume);
            }
            Input::PeerFailed(role, why) => self.fail(
                now,
                FailureReason::Rtc,
                format!("{role:?} peer connection: {why}"),
                LeaveAction::Reconnect,
            ),
            Input::LocalOffer(Some(sdp)) => self.t.local_offer(sdp, &mut self.actions),
            Input::LocalOffer(None) => self.t.no_offer(&mut self.actions),
            Input::RemoteAudio { mid, sid, track } => self.on_remote_audio(mid, sid, track),
            Input::LocalAnswer { sdp, id } => self.t.local_answer(sdp, id, &mut self.actions),
            Input::Signal(m) => self.on_signal(now, *m),
            Input::Peer(role, ev) => self.on_peer(now, role, ev),
        }
        self.check_progress(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_closed() {
            return;
        }
        for (id, result) in self.requests.expired(now) {
            self.act(Action::RequestDone { id, result });
        }
        for cid in self.tracks.expired(now) {
            self.act(Action::PublishDone {
                cid,
                result: Err(PublishError::Timeout(super::media::PUBLISH_TIMEOUT)),
            });
        }
        match &self.phase {
            Phase::Establishing {
                deadline: Some(d), ..
            } if now >= *d => {
                let timeout = self.options.ice_timeout;
                self.fail(
                    now,
                    FailureReason::Rtc,
                    format!("peer connections not up within {timeout:?}"),
                    LeaveAction::Reconnect,
                );
                return;
            }
            Phase::Resuming { deadline, .. } if now >= *deadline => {
                log::info!("resume timed out; rejoining");
                self.start_rejoin(now);
                return;
            }
            Phase::Backoff { rejoin, at } if now >= *at => {
                let rejoin = Rejoin {
                    attempt: rejoin.attempt + 1,
                    ..*rejoin
                };
                self.phase = Phase::Establishing {
                    rejoin: Some(rejoin),
                    deadline: None,
                    join: None,
                };
                self.act(Action::OpenSignal { resume: None });
                return;
            }
            _ => {}
        }
        match self.watch.due(now) {
            Some(Due::Publisher) => self.lost(
                now,
                FailureReason::Rtc,
                "the publisher connection did not come up".into(),
                LeaveAction::Reconnect,
            ),
            Some(Due::Lost(message)) => {
                self.lost(now, FailureReason::Rtc, message, LeaveAction::Resume)
            }
            None => {}
        }
    }

    // ---- sessions ------------------------------------------------------------------

    fn on_joined(&mut self, now: Instant, join: Box<proto::JoinResponse>) {
        let Phase::Establishing {
            deadline,
            join: slot,
            ..
        } = &mut self.phase
        else {
            log::warn!("leaving a session joined outside of a join");
            self.act(Action::CloseSignal { leave: true });
            return;
        };
        self.signal_open = true;
        *deadline = Some(now + self.options.ice_timeout);
        self.t = Transports::new(join.subscriber_primary);
        *slot = Some(join);
        self.act(Action::NewPeers);
        self.t.renegotiate(&mut self.actions);
    }

    fn on_resumed(&mut self, answer: proto::ReconnectResponse) {
        let Phase::Resuming { last_seq, .. } = &mut self.phase else {
            log::warn!("leaving a session resumed outside of a resume");
            self.act(Action::CloseSignal { leave: true });
            return;
        };
        *last_seq = Some(answer.last_message_seq);
        self.signal_open = true;
        self.t.restart();
        self.act(Action::CreateOffer { ice_restart: true });
    }

    /// Finishes a join or a resume once its transports are up.
    fn check_progress(&mut self, now: Instant) {
        match &mut self.phase {
            Phase::Establishing { rejoin, join, .. } if self.t.primary_ready() => {
                let (rejoin, join) = (*rejoin, join.take());
                let Some(join) = join else { return };
                self.phase = Phase::Connected;
                self.watch.publisher_needed_by(
                    (!self.t.publisher_ready()).then(|| now + self.options.ice_timeout),
                );
                let resync = if rejoin.is_some() {
                    self.act(Action::ForgetSent);
                    self.shared.state.lock().resync(&join)
                } else {
                    let state = RoomState::from_join(&join);
                    // What the user learns with the join; what follows comes as events.
                    *self.shared.joined.lock() = state.remotes.values().cloned().collect();
                    *self.shared.state.lock() = state;
                    self.act(Action::JoinResult(Ok(())));
                    vec![]
                };
                self.set_state(ConnectionState::Connected, FailureReason::None);
                for ev in resync {
                    self.emit(ev);
                }
                if rejoin.is_some() {
                    // Our tracks go on in the new session.
                    for request in self.tracks.republish(now) {
                        log::debug!("publishing track {} again", request.cid);
                        self.act(Action::SendSignal(Box::new(Req::AddTrack(request))));
                    }
                    self.emit(RoomEvent::Reconnected);
                }
                self.announced_reconnecting = false;
                for input in std::mem::take(&mut self.backlog) {
                    self.handle_input(now, input);
                }
            }
            Phase::Resuming {
                last_seq: Some(seq),
                ..
            } if self.t.restart_answered
                && self.t.publisher_ice
                && (!self.t.subscriber_answered || self.t.subscriber_ice) =>
            {
                let seq = *seq;
                self.phase = Phase::Connected;
                self.act(Action::ResendAfter(seq));
                self.set_state(ConnectionState::Connected, FailureReason::None);
                self.emit(RoomEvent::Reconnected);
                self.announced_reconnecting = false;
            }
            _ => {}
        }
    }

    /// Something failed: during a join that ends the join (or the rejoin attempt);
    /// in a session it is a loss.
    fn fail(&mut self, now: Instant, reason: FailureReason, message: String, action: LeaveAction) {
        match &self.phase {
            Phase::Establishing { rejoin: None, .. } => {
                self.close_session(true);
                self.act(Action::JoinResult(Err(Error::connect(reason, message))));
                self.phase = Phase::Closed;
                self.act(Action::Finished);
            }
            Phase::Establishing {
                rejoin: Some(r), ..
            } => {
                let r = *r;
                log::info!(
                    "reconnection attempt {} failed ({reason}): {message}",
                    r.attempt
                );
                if !reason.is_retryable() {
                    self.close_session(true);
                    return self.finish(ConnectionState::Failed, reason);
                }
                self.shared.conn.lock().1 = reason;
                self.close_session(true);
                self.schedule_rejoin(now, r);
            }
            // Only the server's word ends a resume for good; any other failure may
            // still be overcome by a fresh join.
            Phase::Resuming { .. } if action == LeaveAction::Disconnect => {
                self.lost(now, reason, message, action)
            }
            Phase::Resuming { .. } => {
                log::info!("resume failed ({reason}): {message}; rejoining");
                self.start_rejoin(now);
            }
            Phase::Connected => self.lost(now, reason, message, action),
            Phase::Backoff { .. } | Phase::Closed => {}
        }
    }

    /// The running session is lost: resume, rejoin or give up.
    fn lost(&mut self, now: Instant, reason: FailureReason, message: String, action: LeaveAction) {
        log::info!("session lost ({reason}): {message}");
        self.watch.clear();
        if !action.retries(reason) {
            self.close_session(true);
            return self.finish(ConnectionState::Disconnected, reason);
        }
        self.announce_reconnecting(reason);
        if action == LeaveAction::Resume && matches!(self.phase, Phase::Connected) {
            let participant_sid = self.shared.state.lock().local.sid.clone();
            // The old socket goes without a leave: the server keeps our session.
            self.act(Action::CloseSignal { leave: false });
            self.signal_open = false;
            self.phase = Phase::Resuming {
                deadline: now + self.options.ice_timeout,
                last_seq: None,
            };
            self.act(Action::OpenSignal {
                resume: Some(Resume {
                    participant_sid,
                    reason: reason.reconnect_reason(),
                }),
            });
        } else {
            self.start_rejoin(now);
        }
    }

    fn start_rejoin(&mut self, now: Instant) {
        self.close_session(true);
        self.schedule_rejoin(
            now,
            Rejoin {
                attempt: 0,
                started: now,
            },
        );
    }

    /// Waits before the attempt after `last`, or gives up.
    fn schedule_rejoin(&mut self, now: Instant, last: Rejoin) {
        let elapsed = now.saturating_duration_since(last.started);
        match self.options.retry.next(last.attempt, elapsed) {
            Some(delay) => {
                self.phase = Phase::Backoff {
                    rejoin: last,
                    at: now + delay,
                }
            }
            None => {
                log::warn!("giving up on the room after {} attempts", last.attempt);
                self.finish(ConnectionState::Failed, FailureReason::MaxRetries);
            }
        }
    }

    fn announce_reconnecting(&mut self, reason: FailureReason) {
        if !self.announced_reconnecting {
            self.announced_reconnecting = true;
            self.set_state(ConnectionState::Reconnecting, reason);
            self.emit(RoomEvent::Reconnecting);
        }
    }

    /// Ends the signal connection (with a leave if `leave` and it is open) and the
    /// peer connections.
    fn close_session(&mut self, leave: bool) {
        if self.signal_open {
            self.act(Action::CloseSignal { leave });
            self.signal_open = false;
        }
        self.act(Action::DropPeers);
        self.unsubscribe_all();
        for cid in self.tracks.local.keys().cloned().collect::<Vec<_>>() {
            self.act(Action::StopSending { cid, forget: false });
        }
        self.watch.clear();
        self.backlog.clear();
    }

    fn leave(&mut self) {
        log::debug!(
            "leaving ({:?}, signal open: {})",
            self.phase,
            self.signal_open
        );
        if let Phase::Establishing { rejoin: None, .. } = self.phase {
            self.act(Action::JoinResult(Err(Error::Closed)));
        }
        self.close_session(true);
        self.finish(ConnectionState::Disconnected, FailureReason::None);
    }

    fn finish(&mut self, state: ConnectionState, reason: FailureReason) {
        for (id, result) in self.requests.close() {
            self.act(Action::RequestDone { id, result });
        }
        for ev in self.shared.closed() {
            self.emit(ev);
        }
        self.set_state(state, reason);
        self.emit(RoomEvent::Disconnected { reason });
        self.phase = Phase::Closed;
        self.act(Action::Finished);
    }

    fn set_state(&mut self, state: ConnectionState, reason: FailureReason) {
        let changed = {
            let mut c = self.shared.conn.lock();
            let changed = c.0 != state;
            *c = (state, reason);
            changed
        };
        // The first join reports Connected itself; a room that never connected
        // reports nothing.
        if changed {
            self.emit(RoomEvent::ConnectionStateChanged(state));
        }
    }

    // ---- signal ------------------------------------------------------------------

    fn on_signal(&mut self, now: Instant, m: Resp) {
        let resuming = matches!(self.phase, Phase::Resuming { .. });
        if self.t.negotiate(&m, resuming, &mut self.actions) {
            return;
        }
        if !matches!(self.phase, Phase::Establishing { .. }) && self.on_track_signal(&m) {
            return;
        }
        if let Resp::Leave(l) = &m {
            return self.on_leave(now, l);
        }
        if matches!(self.phase, Phase::Establishing { .. }) {
            self.backlog.push(Input::Signal(Box::new(m)));
            return;
        }
        let events = match m {
            Resp::RequestResponse(r) => {
                if let Some((id, result)) = self.requests.answered(&r) {
                    self.act(Action::RequestDone { id, result });
                }
                vec![]
            }
            Resp::RefreshToken(token) => {
                *self.shared.token.lock() = token.clone();
                vec![RoomEvent::TokenRefreshed(token)]
            }
            Resp::RoomMoved(m) => {
                // The session now belongs to the other room: resume with its token.
                *self.shared.token.lock() = m.token.clone();
                let mut events = vec![RoomEvent::TokenRefreshed(m.token.clone())];
                events.extend(self.shared.state.lock().on_signal(Resp::RoomMoved(m), now));
                events
            }
            other => self.shared.state.lock().on_signal(other, now),
        };
        for ev in events {
            self.emit(ev);
        }
    }

    fn on_leave(&mut self, now: Instant, l: &proto::LeaveRequest) {
        if LeaveAction::from_field(l.action).is_none() {
            log::warn!("unknown leave action {}; going by can_reconnect", l.action);
        }
        let action = LeaveAction::from_request(l.action, l.can_reconnect);
        let joining = matches!(self.phase, Phase::Establishing { .. });
        let reason = FailureReason::from_leave(l.reason, action.fallback_reason(joining));
        self.fail(
            now,
            reason,
            format!("the server asked us to leave ({reason})"),
            action,
        );
    }

    // ---- peers --------------------------------------------------------------------

    fn on_peer(&mut self, now: Instant, role: PeerRole, ev: PeerEvent) {
        use str0m::IceConnectionState as Ice;
        match ev {
            PeerEvent::Data { kind, bytes } => self.on_data(now, kind, &bytes),
            // The driver turns these into `Input::RemoteAudio`.
            // Both handled by the driver, which owns the peers and the signal.
            PeerEvent::AudioTrack { .. } | PeerEvent::LocalCandidate(_) => {}
            PeerEvent::Connected => self.t.connected(role),
            PeerEvent::ChannelOpen(kind) => {
                self.t.channel_open(role, kind);
                if self.t.publisher_ready() {
                    self.watch.publisher_up();
                }
            }
            PeerEvent::IceState(state) => {
                self.t
                    .ice(role, matches!(state, Ice::Connected | Ice::Completed));
                if matches!(self.phase, Phase::Connected) {
                    self.watch.ice_changed(now, role, state);
                }
            }
            // A resume restarts ICE on every candidate (a new interface among them)
            // while the server still holds the session.
            PeerEvent::PathSilent if matches!(self.phase, Phase::Connected) => self.lost(
                now,
                FailureReason::Rtc,
                format!("{role:?}: nothing heard on the ICE path"),
                LeaveAction::Resume,
            ),
            PeerEvent::PathSilent => {}
            PeerEvent::Closed(why) => {
                if let Phase::Establishing { .. } = self.phase {
                    return self.fail(
                        now,
                        FailureReason::Rtc,
                        format!("{role:?} peer connection failed: {why}"),
                        LeaveAction::Reconnect,
                    );
                }
                self.watch.peer_closed(now, role, &why);
            }
        }
    }

    fn on_data(&mut self, now: Instant, kind: DataKind, bytes: &[u8]) {
        if matches!(self.phase, Phase::Establishing { .. }) {
            let ev = PeerEvent::Data {
                kind,
                bytes: bytes.to_vec(),
            };
            self.backlog.push(Input::Peer(PeerRole::Subscriber, ev));
            return;
        }
        let (sender, sid, event) = match self.receiver.decode(bytes, kind == DataKind::Lossy, now) {
            Ok(Incoming::User(d)) => (
                d.participant_identity.clone(),
                d.participant_sid.clone(),
                RoomEvent::DataReceived(d),
            ),
            Ok(Incoming::Other(p)) => {
                let (sender, sid) = (p.participant_identity.clone(), p.participant_sid.clone());
                // RPC and stream packets are taken in here; what they make follows
                // the sender's announcement like any data.
                let learned = self.shared.state.lock().learn_sender(&sender, &sid, now);
                if let Some(connected) = learned {
                    self.emit(connected);
                }
                for ev in self.shared.route(p) {
                    self.emit(ev);
                }
                return;
            }
            Ok(Incoming::Duplicate) => return,
            Err(e) => return log::warn!("dropping data packet: {e}"),
        };
        // Data often overtakes the announcement of its sender: announce it now.
        let learned = self.shared.state.lock().learn_sender(&sender, &sid, now);
        if let Some(connected) = learned {
            self.emit(connected);
        }
        self.emit(event);
    }
}
