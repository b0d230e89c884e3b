//! The engine's decisions as a state machine with no I/O and no clock of its own.
//!
//! It is fed what happened (a signal message, a peer event, the answer to an action,
//! a user command) with the time `now`, and answers with actions for the driver to
//! carry out, in order, and the next instant it wants to be woken at. It decides
//! when a join is complete, routes offers, answers and candidates to their
//! transport, correlates requests with their answers, holds data from senders not
//! announced yet, and chooses between resuming the session and rejoining when it is
//! lost. Tests drive it with recorded signal traces.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use livekit_protocol as proto;
use proto::signal_request::Message as Req;
use proto::signal_response::Message as Resp;

use super::{RoomOptions, Shared};
use crate::data::{DataKind, DataReceiver, Incoming, ReceivedData};
use crate::error::Error;
use crate::peer::{PeerEvent, PeerRole};
use crate::room::{RoomEvent, RoomState};
use crate::sdp;
use crate::signal::Resume;
use crate::state::{ConnectionState, FailureReason, LeaveAction};

/// How long a lost ICE connection may stay lost before we act.
pub const ICE_LOST_TIMEOUT: Duration = Duration::from_secs(10);
/// A closed peer connection usually means the server is ending the session; give its
/// `LeaveRequest` (and the real reason) this long to arrive first.
pub const LEAVE_GRACE: Duration = Duration::from_secs(2);
/// Data can overtake the signal update that announces its sender; hold such packets
/// this long (at most) so that every packet is delivered with a known participant.
pub const UNKNOWN_SENDER_HOLD: Duration = Duration::from_secs(5);
/// Bound of the packets held for unknown senders.
const HELD_MAX: usize = 1024;
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

/// What happened, as the driver reports it.
#[derive(Debug)]
pub enum Input {
    /// A signal connection opened and the server answered a join: a new session.
    Joined(Box<proto::JoinResponse>),
    /// A signal connection opened and the server resumed our session.
    Resumed(proto::ReconnectResponse),
    /// Opening a signal connection failed.
    SignalFailed(Error),
    Signal(Box<Resp>),
    /// The signal connection is gone.
    SignalClosed {
        reason: FailureReason,
        message: String,
    },
    Peer(PeerRole, PeerEvent),
    /// The publisher's offer, asked for by [`Action::CreateOffer`].
    LocalOffer(String),
    /// The subscriber's answer to the server's offer `id`.
    LocalAnswer {
        sdp: String,
        id: u32,
    },
    /// A peer connection refused what it was given, or could not be created.
    PeerFailed(PeerRole, String),
    /// The user leaves (or nobody holds the room any more).
    Leave,
}

/// What the driver must do, in this order.
#[derive(Debug)]
pub enum Action {
    /// Open a signal connection: a join, or a resume of the current session.
    OpenSignal {
        resume: Option<Resume>,
    },
    /// Close the signal connection, saying we leave when `leave`.
    CloseSignal {
        leave: bool,
    },
    /// Replace both peer connections with new ones (a new session).
    NewPeers,
    DropPeers,
    SendSignal(Box<Req>),
    /// Ask the publisher for an offer; the answer comes as [`Input::LocalOffer`].
    CreateOffer {
        ice_restart: bool,
    },
    AcceptAnswer(String),
    /// Give the subscriber the server's offer; the answer comes as [`Input::LocalAnswer`].
    AcceptOffer {
        sdp: String,
        id: u32,
    },
    AddRemoteCandidate(PeerRole, String),
    /// Trickle our candidates of `role` for the m-line `mid` at `index`.
    TrickleLocal {
        role: PeerRole,
        mid: String,
        index: u32,
    },
    Emit(RoomEvent),
    /// The server has every reliable packet up to this sequence: send the rest again.
    ResendAfter(u32),
    /// A new session: the packets kept for the old one are of no use.
    ForgetSent,
    /// The first join is complete, or failed for good.
    JoinResult(Result<(), Error>),
    /// The server answered (or never will) request `id`.
    RequestDone {
        id: u32,
        result: Result<(), RequestError>,
    },
    /// The room is over; nothing follows.
    Finished,
}

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

/// What one session's transports have done so far.
#[derive(Debug, Default)]
struct Transports {
    subscriber_primary: bool,
    publisher_connected: bool,
    subscriber_connected: bool,
    reliable_open: bool,
    lossy_open: bool,
    subscriber_channel_open: bool,
    publisher_ice: bool,
    subscriber_ice: bool,
    /// Whether the subscriber answered an offer (and trickled its candidates).
    subscriber_answered: bool,
    /// The publisher sent an offer and waits for its answer.
    offer_pending: bool,
    /// The answer to the ICE-restart offer of a resume arrived.
    restart_answered: bool,
    /// The last remote description of each transport, for candidate routing.
    publisher_remote: Option<String>,
    subscriber_remote: Option<String>,
}

impl Transports {
    fn publisher_ready(&self) -> bool {
        self.publisher_connected && self.reliable_open && self.lossy_open
    }

    /// The join is done when the primary connection is up, as in the official SDKs.
    fn primary_ready(&self) -> bool {
        if self.subscriber_primary {
            self.subscriber_connected && self.subscriber_channel_open
        } else {
            self.publisher_ready()
        }
    }
}

/// A loss we wait on before acting: when, why, and whether ICE may still recover.
#[derive(Debug)]
struct PendingLoss {
    at: Instant,
    message: String,
    ice: bool,
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
    held: VecDeque<(Instant, ReceivedData)>,
    pending_loss: Option<PendingLoss>,
    publisher_deadline: Option<Instant>,
    /// Whether `Reconnecting` was reported for the current loss.
    announced_reconnecting: bool,
    requests: HashMap<u32, Instant>,
    next_request: u32,
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
            t: Transports::default(),
            signal_open: false,
            actions: VecDeque::new(),
            backlog: Vec::new(),
            receiver: DataReceiver::default(),
            held: VecDeque::new(),
            pending_loss: None,
            publisher_deadline: None,
            announced_reconnecting: false,
            requests: HashMap::new(),
            next_request: 1,
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
            self.pending_loss.as_ref().map(|l| l.at),
            self.publisher_deadline,
            self.held.front().map(|(at, _)| *at + UNKNOWN_SENDER_HOLD),
            self.requests.values().min().copied(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn act(&mut self, a: Action) {
        self.actions.push_back(a);
    }

    fn emit(&mut self, ev: RoomEvent) {
        self.act(Action::Emit(ev));
    }

    /// Sends a metadata update and returns its request id; its answer comes as
    /// [`Action::RequestDone`].
    pub fn request_update(
        &mut self,
        now: Instant,
        mut req: proto::UpdateParticipantMetadata,
    ) -> u32 {
        let id = self.next_request;
        self.next_request = self.next_request.wrapping_add(1).max(1);
        if !self.signal_open || !matches!(self.phase, Phase::Connected | Phase::Resuming { .. }) {
            self.act(Action::RequestDone {
                id,
                result: Err(RequestError::NotConnected),
            });
            return id;
        }
        req.request_id = id;
        self.requests.insert(id, now + REQUEST_TIMEOUT);
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
            Input::LocalOffer(sdp) => {
                self.t.offer_pending = true;
                self.act(Action::SendSignal(Box::new(Req::Offer(
                    proto::SessionDescription {
                        r#type: "offer".into(),
                        sdp: sdp.clone(),
                        ..Default::default()
                    },
                ))));
                self.trickle(PeerRole::Publisher, &sdp);
            }
            Input::LocalAnswer { sdp, id } => {
                self.act(Action::SendSignal(Box::new(Req::Answer(
                    proto::SessionDescription {
                        r#type: "answer".into(),
                        sdp: sdp.clone(),
                        id,
                        ..Default::default()
                    },
                ))));
                if !self.t.subscriber_answered {
                    self.t.subscriber_answered = true;
                    self.trickle(PeerRole::Subscriber, &sdp);
                }
            }
            Input::Signal(m) => self.on_signal(now, *m),
            Input::Peer(role, ev) => self.on_peer(now, role, ev),
        }
        self.check_progress(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_closed() {
            return;
        }
        for (id, _) in self.take_expired_requests(now) {
            self.act(Action::RequestDone {
                id,
                result: Err(RequestError::NoAnswer),
            });
        }
        if self
            .held
            .front()
            .is_some_and(|(at, _)| now >= *at + UNKNOWN_SENDER_HOLD)
        {
            self.release_held(now, true);
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
        if self.publisher_deadline.is_some_and(|d| now >= d) {
            self.publisher_deadline = None;
            self.lost(
                now,
                FailureReason::Rtc,
                "the publisher connection did not come up".into(),
                LeaveAction::Reconnect,
            );
            return;
        }
        if self.pending_loss.as_ref().is_some_and(|l| now >= l.at) {
            let message = self
                .pending_loss
                .take()
                .map(|l| l.message)
                .unwrap_or_default();
            self.lost(now, FailureReason::Rtc, message, LeaveAction::Resume);
        }
    }

    fn take_expired_requests(&mut self, now: Instant) -> Vec<(u32, Instant)> {
        let expired: Vec<_> = self
            .requests
            .iter()
            .filter(|(_, d)| now >= **d)
            .map(|(id, d)| (*id, *d))
            .collect();
        for (id, _) in &expired {
            self.requests.remove(id);
        }
        expired
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
        self.t = Transports {
            subscriber_primary: join.subscriber_primary,
            ..Default::default()
        };
        *slot = Some(join);
        self.act(Action::NewPeers);
        self.act(Action::CreateOffer { ice_restart: false });
    }

    fn on_resumed(&mut self, answer: proto::ReconnectResponse) {
        let Phase::Resuming { last_seq, .. } = &mut self.phase else {
            log::warn!("leaving a session resumed outside of a resume");
            self.act(Action::CloseSignal { leave: true });
            return;
        };
        *last_seq = Some(answer.last_message_seq);
        self.signal_open = true;
        self.t.publisher_ice = false;
        self.t.offer_pending = false;
        self.t.restart_answered = false;
        self.act(Action::CreateOffer { ice_restart: true });
    }

    /// Finishes a join or a resume once its transports are up.
    fn check_progress(&mut self, now: Instant) {
        match &mut self.phase {
            Phase::Establishing { rejoin, join, .. } if self.t.primary_ready() => {
                let (rejoin, join) = (*rejoin, join.take());
                let Some(join) = join else { return };
                self.phase = Phase::Connected;
                self.publisher_deadline =
                    (!self.t.publisher_ready()).then(|| now + self.options.ice_timeout);
                let resync = if rejoin.is_some() {
                    self.act(Action::ForgetSent);
                    self.shared.state.lock().resync(&join)
                } else {
                    *self.shared.state.lock() = RoomState::from_join(&join);
                    self.act(Action::JoinResult(Ok(())));
                    vec![]
                };
                self.set_state(ConnectionState::Connected, FailureReason::None);
                for ev in resync {
                    self.emit(ev);
                }
                if rejoin.is_some() {
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
        self.pending_loss = None;
        self.publisher_deadline = None;
        let retry = action != LeaveAction::Disconnect && reason.is_retryable();
        if !retry {
            self.close_session(true);
            return self.finish(ConnectionState::Disconnected, reason);
        }
        self.announce_reconnecting(reason);
        if action == LeaveAction::Resume && matches!(self.phase, Phase::Connected) {
            let participant_sid = self.shared.state.lock().local.sid.clone();
            let reason = if reason == FailureReason::Rtc {
                proto::ReconnectReason::RrPublisherFailed
            } else {
                proto::ReconnectReason::RrSignalDisconnected
            };
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
                    reason: reason as i32,
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
        self.pending_loss = None;
        self.publisher_deadline = None;
        self.backlog.clear();
    }

    fn leave(&mut self) {
        if let Phase::Establishing { rejoin: None, .. } = self.phase {
            self.act(Action::JoinResult(Err(Error::Closed)));
        }
        self.close_session(true);
        self.finish(ConnectionState::Disconnected, FailureReason::None);
    }

    fn finish(&mut self, state: ConnectionState, reason: FailureReason) {
        for (id, _) in std::mem::take(&mut self.requests) {
            self.act(Action::RequestDone {
                id,
                result: Err(RequestError::Closed),
            });
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
        if self.negotiate(&m) {
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
            Resp::Update(u) => self
                .shared
                .state
                .lock()
                .on_participant_update(&u.participants),
            Resp::RoomUpdate(u) => match u.room {
                Some(room) => self.shared.state.lock().on_room_update(&room),
                None => vec![],
            },
            Resp::SpeakersChanged(sp) => self.shared.state.lock().on_speakers_changed(&sp.speakers),
            Resp::ConnectionQuality(q) => {
                self.shared.state.lock().on_connection_quality(&q.updates)
            }
            Resp::RequestResponse(r) => {
                self.on_request_response(&r);
                vec![]
            }
            Resp::RefreshToken(token) => {
                *self.shared.token.lock() = token.clone();
                vec![RoomEvent::TokenRefreshed(token)]
            }
            other => {
                log::trace!("unhandled signal message: {other:?}");
                vec![]
            }
        };
        for ev in events {
            self.emit(ev);
        }
        if !self.held.is_empty() {
            self.release_held(now, false);
        }
    }

    fn on_request_response(&mut self, r: &proto::RequestResponse) {
        if self.requests.remove(&r.request_id).is_none() {
            log::debug!("answer to unknown request {}", r.request_id);
            return;
        }
        let result = match proto::request_response::Reason::try_from(r.reason) {
            Ok(proto::request_response::Reason::Ok) => Ok(()),
            Ok(reason) if r.message.is_empty() => Err(reason.as_str_name().to_owned()),
            Ok(reason) => Err(format!("{}: {}", reason.as_str_name(), r.message)),
            Err(_) => Err(format!("reason {}: {}", r.reason, r.message)),
        }
        .map_err(RequestError::Refused);
        self.act(Action::RequestDone {
            id: r.request_id,
            result,
        });
    }

    fn on_leave(&mut self, now: Instant, l: &proto::LeaveRequest) {
        let action = LeaveAction::from_request(l.action, l.can_reconnect);
        let fallback = match (&self.phase, action) {
            (Phase::Establishing { .. }, _) => FailureReason::JoinIncomplete,
            (_, LeaveAction::Disconnect) => FailureReason::Other,
            _ => FailureReason::SignalClose,
        };
        let reason = FailureReason::from_leave(l.reason, fallback);
        self.fail(
            now,
            reason,
            format!("the server asked us to leave ({reason})"),
            action,
        );
    }

    /// Routes offer, answer and trickle messages to their transport; `false` for
    /// anything else.
    fn negotiate(&mut self, m: &Resp) -> bool {
        match m {
            Resp::Answer(sd) => {
                // An answer to no offer of ours (a stale one from before a resume) would
                // only make the publisher fail.
                if !std::mem::take(&mut self.t.offer_pending) {
                    log::warn!("skipping a publisher answer with no offer pending");
                    return true;
                }
                if matches!(self.phase, Phase::Resuming { .. }) {
                    self.t.restart_answered = true;
                }
                self.t.publisher_remote = Some(sd.sdp.clone());
                self.act(Action::AcceptAnswer(sd.sdp.clone()));
            }
            Resp::Offer(sd) => {
                self.t.subscriber_remote = Some(sd.sdp.clone());
                self.act(Action::AcceptOffer {
                    sdp: sd.sdp.clone(),
                    id: sd.id,
                });
            }
            Resp::Trickle(t) => self.on_remote_candidate(t),
            _ => return false,
        }
        true
    }

    fn on_remote_candidate(&mut self, t: &proto::TrickleRequest) {
        let role = match proto::SignalTarget::try_from(t.target) {
            Ok(proto::SignalTarget::Publisher) => PeerRole::Publisher,
            Ok(proto::SignalTarget::Subscriber) => PeerRole::Subscriber,
            Err(_) => {
                log::warn!("skipping a candidate for unknown transport {}", t.target);
                return;
            }
        };
        // A candidate names its m-line; one for a section the transport does not have
        // belongs to another negotiation.
        let remote = match role {
            PeerRole::Publisher => &self.t.publisher_remote,
            PeerRole::Subscriber => &self.t.subscriber_remote,
        };
        if let (Some(sdp), Some(mid)) = (remote, candidate_mid(&t.candidate_init)) {
            if !sdp::has_mid(sdp, &mid) {
                log::warn!("skipping a {role:?} candidate for unknown m-line {mid:?}");
                return;
            }
        }
        self.act(Action::AddRemoteCandidate(role, t.candidate_init.clone()));
    }

    fn trickle(&mut self, role: PeerRole, local_sdp: &str) {
        if let Some(line) = sdp::transport_line(local_sdp) {
            self.act(Action::TrickleLocal {
                role,
                mid: line.mid,
                index: line.index,
            });
        }
    }

    // ---- peers --------------------------------------------------------------------

    fn on_peer(&mut self, now: Instant, role: PeerRole, ev: PeerEvent) {
        use str0m::IceConnectionState as Ice;
        match ev {
            PeerEvent::Data { kind, bytes } => self.on_data(now, kind, &bytes),
            PeerEvent::Connected => match role {
                PeerRole::Publisher => self.t.publisher_connected = true,
                PeerRole::Subscriber => self.t.subscriber_connected = true,
            },
            PeerEvent::ChannelOpen(kind) => match (role, kind) {
                (PeerRole::Publisher, DataKind::Reliable) => {
                    self.t.reliable_open = true;
                    if self.t.publisher_ready() {
                        self.publisher_deadline = None;
                    }
                }
                (PeerRole::Publisher, DataKind::Lossy) => {
                    self.t.lossy_open = true;
                    if self.t.publisher_ready() {
                        self.publisher_deadline = None;
                    }
                }
                (PeerRole::Subscriber, DataKind::Reliable) => self.t.subscriber_channel_open = true,
                (PeerRole::Subscriber, DataKind::Lossy) => {}
            },
            PeerEvent::IceState(state) => {
                let up = matches!(state, Ice::Connected | Ice::Completed);
                match role {
                    PeerRole::Publisher => self.t.publisher_ice = up,
                    PeerRole::Subscriber => self.t.subscriber_ice = up,
                }
                if !matches!(self.phase, Phase::Connected) {
                    return;
                }
                if state == Ice::Disconnected && self.pending_loss.is_none() {
                    self.pending_loss = Some(PendingLoss {
                        at: now + ICE_LOST_TIMEOUT,
                        message: format!("{role:?} ICE connection lost"),
                        ice: true,
                    });
                } else if up && self.pending_loss.as_ref().is_some_and(|l| l.ice) {
                    self.pending_loss = None;
                }
            }
            PeerEvent::Closed(why) => {
                if let Phase::Establishing { .. } = self.phase {
                    return self.fail(
                        now,
                        FailureReason::Rtc,
                        format!("{role:?} peer connection failed: {why}"),
                        LeaveAction::Reconnect,
                    );
                }
                let at = now + LEAVE_GRACE;
                if self.pending_loss.as_ref().is_none_or(|l| l.at > at) {
                    self.pending_loss = Some(PendingLoss {
                        at,
                        message: format!("{role:?} peer connection closed: {why}"),
                        ice: false,
                    });
                }
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
        match self.receiver.decode(bytes, kind == DataKind::Lossy, now) {
            Ok(Incoming::User(d)) => {
                let known = {
                    let st = self.shared.state.lock();
                    d.participant_identity.is_empty()
                        || d.participant_identity == st.local.identity
                        || st.remotes.contains_key(&d.participant_identity)
                };
                if known && self.held.is_empty() {
                    self.emit(RoomEvent::DataReceived(d));
                } else {
                    self.held.push_back((now, d));
                    self.release_held(now, false);
                }
            }
            Ok(Incoming::Other(p)) => self.emit(RoomEvent::DataPacket(p)),
            Ok(Incoming::Duplicate) => {}
            Err(e) => log::warn!("dropping data packet: {e}"),
        }
    }

    /// Delivers held packets in order while their sender is known (or, with
    /// `expired`, once they have waited long enough).
    fn release_held(&mut self, now: Instant, expired: bool) {
        while let Some((at, d)) = self.held.front() {
            let known = self
                .shared
                .state
                .lock()
                .remotes
                .contains_key(&d.participant_identity);
            let overdue = expired && now >= *at + UNKNOWN_SENDER_HOLD;
            if !(known || overdue || self.held.len() >= HELD_MAX) {
                break;
            }
            if let Some((_, d)) = self.held.pop_front() {
                self.emit(RoomEvent::DataReceived(d));
            }
        }
    }
}

/// The `sdpMid` of a trickled `candidate_init`, if it names one.
fn candidate_mid(init: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(init).ok()?;
    v.get("sdpMid")?.as_str().map(str::to_owned)
}
