//! The engine: joins a room and keeps it joined.
//!
//! `Session::establish` runs one join: signal WebSocket, then the publisher and
//! subscriber peer connections negotiated over it until ICE, DTLS and the data
//! channels are up. One engine task per room then drives the session: it routes
//! signal messages to the peers and to `RoomState`, decodes data packets, and on
//! a loss rejoins under `RetryPolicy` (RECONNECTING) or gives up (FAILED).
//! `Room` is the user's handle; dropping every clone of it leaves the room.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use livekit_protocol as proto;
use parking_lot::Mutex;
use proto::signal_request::Message as Req;
use proto::signal_response::Message as Resp;
use tokio::sync::{mpsc, oneshot};
use url::Url;

use crate::data::{DataKind, DataReceiver, DataSender, Incoming, UserData};
use crate::error::{Error, Result};
use crate::peer::{route_ip, PeerConnection, PeerEvent, PeerRole};
use crate::room::{Participant, RoomEvent, RoomInfo, RoomState};
use crate::signal::{leave_request, parse_server_url, JoinOptions, SignalClient, SignalEvent};
use crate::state::{ConnectionState, FailureReason, LeaveAction, RetryPolicy};

/// How long ICE, DTLS and the data channels may take on a join (seed RTCEngine).
pub const ICE_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a lost ICE connection may stay lost before we rejoin.
pub const ICE_LOST_TIMEOUT: Duration = Duration::from_secs(10);
/// A closed peer connection usually means the server is ending the session; give its
/// `LeaveRequest` (and the real reason) this long to arrive before rejoining.
pub const LEAVE_GRACE: Duration = Duration::from_secs(2);
/// Data can overtake the signal update that announces its sender; hold such packets
/// this long (at most) so that every packet is delivered with a known participant.
pub const UNKNOWN_SENDER_HOLD: Duration = Duration::from_secs(5);
/// Bound of the packets held for unknown senders.
const HELD_MAX: usize = 1024;
/// Bound of the user's event queue; a slow consumer slows the room, never grows memory.
pub const EVENT_QUEUE: usize = 4096;

#[derive(Debug, Clone)]
pub struct RoomOptions {
    pub join: JoinOptions,
    pub retry: RetryPolicy,
    pub ice_timeout: Duration,
}

impl Default for RoomOptions {
    fn default() -> Self {
        Self {
            join: JoinOptions::default(),
            retry: RetryPolicy::default(),
            ice_timeout: ICE_CONNECT_TIMEOUT,
        }
    }
}

/// One joined session: the signal connection and its two peer connections.
struct Session {
    signal: SignalClient,
    signal_rx: mpsc::Receiver<SignalEvent>,
    publisher: PeerConnection,
    subscriber: PeerConnection,
    peer_rx: mpsc::Receiver<(PeerRole, PeerEvent)>,
    join: proto::JoinResponse,
    /// Messages and peer events that arrived while establishing, in order.
    backlog: Vec<Backlog>,
    subscriber_answered: bool,
    /// Answers the publisher got so far (a resume waits for a new one).
    answers: u32,
    /// Whether the publisher's data channels are open (it may finish after the join
    /// when the subscriber is primary).
    publisher_ready: bool,
}

enum Backlog {
    Signal(Box<Resp>),
    Peer(PeerRole, PeerEvent),
}

async fn local_ip_for(base: &Url) -> IpAddr {
    let host = base.host_str().unwrap_or("127.0.0.1");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = base.port_or_known_default().unwrap_or(443);
    let remote = match tokio::net::lookup_host((host, port)).await {
        Ok(mut addrs) => addrs.next().map(|a| a.ip()),
        Err(_) => None,
    };
    route_ip(remote.unwrap_or(IpAddr::from([127, 0, 0, 1])))
}

impl Session {
    async fn establish(base: &Url, token: &str, opts: &RoomOptions) -> Result<Session> {
        let (signal, first, signal_rx) =
            SignalClient::connect(base, token, &opts.join, None).await?;
        let Resp::Join(join) = first else {
            return Err(Error::connect(
                FailureReason::JoinIncomplete,
                "expected a join answer",
            ));
        };
        let local_ip = local_ip_for(base).await;
        let (peer_tx, peer_rx) = mpsc::channel(1024);
        let publisher = PeerConnection::new(PeerRole::Publisher, local_ip, peer_tx.clone()).await?;
        let subscriber = PeerConnection::new(PeerRole::Subscriber, local_ip, peer_tx).await?;
        let mut s = Session {
            signal,
            signal_rx,
            publisher,
            subscriber,
            peer_rx,
            join,
            backlog: Vec::new(),
            subscriber_answered: false,
            answers: 0,
            publisher_ready: false,
        };
        let error = match tokio::time::timeout(opts.ice_timeout, s.negotiate_until_ready()).await {
            Ok(Ok(())) => return Ok(s),
            Ok(Err(e)) => e,
            Err(_) => Error::connect(
                FailureReason::Rtc,
                format!("peer connections not up within {:?}", opts.ice_timeout),
            ),
        };
        // The server accepted the join: say we leave, or it keeps our participant
        // around waiting for a resume.
        s.signal.close(Some(leave_request())).await;
        Err(error)
    }

    async fn negotiate_until_ready(&mut self) -> Result<()> {
        let started = Instant::now();
        let offer = self.publisher.create_offer().await?;
        self.send_offer(offer).await?;
        // The join is done when the primary connection is up, as in the official SDKs;
        // when the subscriber is primary, the publisher finishes in the background and
        // data sent meanwhile waits for its channels (one Ta of str0m's ICE pacing).
        let subscriber_primary = self.join.subscriber_primary;
        let (mut pub_up, mut sub_up, mut reliable, mut lossy, mut sub_channel) =
            (false, false, false, false, false);
        loop {
            self.publisher_ready = pub_up && reliable && lossy;
            let ready = if subscriber_primary {
                sub_up && sub_channel
            } else {
                self.publisher_ready
            };
            if ready {
                return Ok(());
            }
            match self
                .step(started, "joining", FailureReason::JoinIncomplete)
                .await?
            {
                Some((PeerRole::Publisher, PeerEvent::Connected)) => pub_up = true,
                Some((PeerRole::Subscriber, PeerEvent::Connected)) => sub_up = true,
                Some((PeerRole::Publisher, PeerEvent::ChannelOpen(DataKind::Reliable))) => {
                    reliable = true
                }
                Some((PeerRole::Publisher, PeerEvent::ChannelOpen(DataKind::Lossy))) => {
                    lossy = true
                }
                Some((PeerRole::Subscriber, PeerEvent::ChannelOpen(DataKind::Reliable))) => {
                    sub_channel = true
                }
                _ => {}
            }
        }
    }

    /// After a resume: negotiates until the publisher has its answer and both peer
    /// connections (the subscriber if it ever connected) have ICE again.
    async fn wait_until_resumed(&mut self) -> Result<()> {
        let started = Instant::now();
        let answers_before = self.answers;
        let need_subscriber = self.subscriber_answered;
        while !(self.answers > answers_before
            && self.publisher.ice_connected()
            && (!need_subscriber || self.subscriber.ice_connected()))
        {
            self.step(started, "resuming", FailureReason::StateMismatch)
                .await?;
        }
        Ok(())
    }

    /// One step of negotiation: applies the next signal message (offer, answer,
    /// trickle; others wait in the backlog) or returns the next peer state change.
    /// A leave (`leave_fallback` when it gives no reason), a lost signal or a failed
    /// peer connection ends it with an error.
    async fn step(
        &mut self,
        started: Instant,
        during: &str,
        leave_fallback: FailureReason,
    ) -> Result<Option<(PeerRole, PeerEvent)>> {
        tokio::select! {
            ev = self.signal_rx.recv() => match ev {
                Some(SignalEvent::Message(m)) => {
                    log::debug!("{during} +{:?}: signal {}", started.elapsed(), signal_name(&m));
                    if let Resp::Leave(l) = *m {
                        let reason = FailureReason::from_leave(l.reason, leave_fallback);
                        return Err(Error::connect(reason, format!("the server ended the session while {during}")));
                    }
                    if !self.negotiate(&m).await? {
                        self.backlog.push(Backlog::Signal(m));
                    }
                    Ok(None)
                }
                Some(SignalEvent::Closed { reason, message }) => Err(Error::connect(reason, message)),
                None => Err(Error::connect(FailureReason::SignalClose, "signal connection lost")),
            },
            ev = self.peer_rx.recv() => match ev {
                Some((role, PeerEvent::Closed(why))) => {
                    Err(Error::connect(FailureReason::Rtc, format!("{role:?} peer connection failed: {why}")))
                }
                Some((role, ev @ PeerEvent::Data { .. })) => {
                    self.backlog.push(Backlog::Peer(role, ev));
                    Ok(None)
                }
                Some((role, ev)) => {
                    log::debug!("{during} +{:?}: {role:?} {ev:?}", started.elapsed());
                    Ok(Some((role, ev)))
                }
                None => Err(Error::connect(FailureReason::Rtc, "peer connections ended")),
            },
        }
    }

    async fn send_offer(&self, sdp: String) -> Result<()> {
        self.signal
            .send(Req::Offer(proto::SessionDescription {
                r#type: "offer".into(),
                sdp: sdp.clone(),
                ..Default::default()
            }))
            .await?;
        self.trickle(&self.publisher, &sdp).await
    }

    async fn trickle(&self, pc: &PeerConnection, sdp: &str) -> Result<()> {
        let mid = sdp
            .lines()
            .find_map(|l| l.trim().strip_prefix("a=mid:"))
            .unwrap_or("0")
            .to_owned();
        for init in pc.local_candidate_inits(&mid) {
            self.signal
                .send(Req::Trickle(proto::TrickleRequest {
                    candidate_init: init,
                    target: pc.role().signal_target(),
                    ..Default::default()
                }))
                .await?;
        }
        Ok(())
    }

    /// Applies offer/answer/trickle messages; `false` for anything else.
    async fn negotiate(&mut self, m: &Resp) -> Result<bool> {
        match m {
            Resp::Answer(sd) => {
                self.publisher.accept_answer(sd.sdp.clone()).await?;
                self.answers += 1;
                Ok(true)
            }
            Resp::Offer(sd) => {
                let answer = self.subscriber.accept_offer(sd.sdp.clone()).await?;
                self.signal
                    .send(Req::Answer(proto::SessionDescription {
                        r#type: "answer".into(),
                        sdp: answer.clone(),
                        id: sd.id,
                        ..Default::default()
                    }))
                    .await?;
                if !self.subscriber_answered {
                    self.subscriber_answered = true;
                    self.trickle(&self.subscriber, &answer).await?;
                }
                Ok(true)
            }
            Resp::Trickle(t) => {
                let pc = match PeerRole::from_signal_target(t.target) {
                    PeerRole::Publisher => &self.publisher,
                    PeerRole::Subscriber => &self.subscriber,
                };
                if let Err(e) = pc.add_remote_candidate(&t.candidate_init).await {
                    log::warn!("ignoring remote candidate: {e}");
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

fn signal_name(m: &Resp) -> &'static str {
    match m {
        Resp::Offer(_) => "offer",
        Resp::Answer(_) => "answer",
        Resp::Trickle(_) => "trickle",
        Resp::Update(_) => "participant update",
        _ => "other",
    }
}

/// What the `Room` handle and the engine task share.
struct Shared {
    state: Mutex<RoomState>,
    conn: Mutex<(ConnectionState, FailureReason)>,
    link: tokio::sync::Mutex<Link>,
    token: Mutex<String>,
    /// Signal requests waiting for the server's `RequestResponse`, by request_id.
    requests: Mutex<HashMap<u32, oneshot::Sender<std::result::Result<(), String>>>>,
    next_request: std::sync::atomic::AtomicU32,
}

/// How long the server may take to confirm or refuse a request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The send side of the current session; replaced on every rejoin.
struct Link {
    signal: Option<SignalClient>,
    publisher: Option<PeerConnection>,
    sender: DataSender,
}

enum Command {
    Disconnect(oneshot::Sender<()>),
}

/// Forgets a pending request however its caller ends (answer, timeout, cancel).
struct RequestGuard<'a>(&'a Shared, u32);

impl Drop for RequestGuard<'_> {
    fn drop(&mut self) {
        self.0.requests.lock().remove(&self.1);
    }
}

/// A joined room. Cheap to clone; the room is left when the last clone is dropped
/// or `disconnect` is called.
#[derive(Clone)]
pub struct Room {
    shared: Arc<Shared>,
    cmd: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Room {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Room").field("room", &self.info()).finish()
    }
}

impl Room {
    /// Joins the room at `url` with `token`. Cancelling this future at any point
    /// leaves nothing behind: every task it started ends with its handles.
    pub async fn connect(
        url: &str,
        token: &str,
        options: RoomOptions,
    ) -> Result<(Room, mpsc::Receiver<RoomEvent>)> {
        let base = parse_server_url(url)?;
        let session = Session::establish(&base, token, &options).await?;
        let state = RoomState::from_join(&session.join);
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            conn: Mutex::new((ConnectionState::Connected, FailureReason::None)),
            link: tokio::sync::Mutex::new(Link {
                signal: Some(session.signal.clone()),
                publisher: Some(session.publisher.clone()),
                sender: DataSender::default(),
            }),
            token: Mutex::new(token.to_owned()),
            requests: Mutex::new(HashMap::new()),
            next_request: std::sync::atomic::AtomicU32::new(1),
        });
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let (cmd_tx, cmd_rx) = mpsc::channel(8);
        let task = EngineTask {
            base,
            options,
            shared: shared.clone(),
            events: events_tx,
            receiver: DataReceiver::default(),
            pending_loss: None,
            publisher_deadline: None,
            announced_reconnecting: false,
            held: Default::default(),
        };
        tokio::spawn(task.run(session, cmd_rx));
        Ok((
            Room {
                shared,
                cmd: cmd_tx,
            },
            events_rx,
        ))
    }

    pub fn info(&self) -> RoomInfo {
        self.shared.state.lock().room.clone()
    }

    pub fn local_participant(&self) -> Participant {
        self.shared.state.lock().local.clone()
    }

    pub fn remote_participants(&self) -> Vec<Participant> {
        self.shared.state.lock().remotes.values().cloned().collect()
    }

    pub fn remote_participant(&self, identity: &str) -> Option<Participant> {
        self.shared.state.lock().remotes.get(identity).cloned()
    }

    pub fn active_speakers(&self) -> Vec<String> {
        self.shared.state.lock().active_speakers()
    }

    pub fn connection_state(&self) -> ConnectionState {
        self.shared.conn.lock().0
    }

    pub fn failure_reason(&self) -> FailureReason {
        self.shared.conn.lock().1
    }

    /// The current token (the server refreshes it while connected).
    pub fn token(&self) -> String {
        self.shared.token.lock().clone()
    }

    /// Sends a user packet; resolves once the data channel has taken it. Oversized
    /// packets are refused before anything is sent.
    pub async fn publish_data(&self, data: UserData, kind: DataKind) -> Result<()> {
        let accepted = {
            let mut link = self.shared.link.lock().await;
            let Some(publisher) = link.publisher.clone() else {
                return Err(Error::NotConnected);
            };
            let identity = self.shared.state.lock().local.identity.clone();
            let bytes = link
                .sender
                .encode(&identity, data, kind, publisher.max_message_size())?;
            // Queued under the lock so that sequence order is wire order.
            publisher.enqueue(kind, bytes).await?
        };
        accepted
            .await
            .map_err(|_| Error::Rtc("peer connection closed".into()))?
    }

    /// Asks the server to change our metadata, name or attributes (needs the
    /// `canUpdateOwnMetadata` grant). Resolves when the server has applied it (the
    /// change also arrives as room events) and fails with its reason when refused.
    pub async fn update_local_participant(
        &self,
        metadata: Option<String>,
        name: Option<String>,
        attributes: Option<HashMap<String, String>>,
    ) -> Result<()> {
        let local = self.local_participant();
        let request_id = self
            .shared
            .next_request
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let req = proto::UpdateParticipantMetadata {
            metadata: metadata.clone().unwrap_or(local.metadata),
            name: name.clone().unwrap_or(local.name),
            attributes: attributes.clone().unwrap_or_default(),
            request_id,
        };
        let signal = self.shared.link.lock().await.signal.clone();
        let Some(signal) = signal else {
            return Err(Error::NotConnected);
        };
        let (tx, rx) = oneshot::channel();
        self.shared.requests.lock().insert(request_id, tx);
        let _forget = RequestGuard(&self.shared, request_id);
        signal.send(Req::UpdateMetadata(req)).await?;
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(message))) => Err(Error::Refused(message)),
            Ok(Err(_)) => Err(Error::NotConnected),
            Err(_) => Err(Error::Timeout("the server did not confirm the update")),
        }
    }

    /// Leaves the room: sends a leave, closes sockets and ends every task.
    /// Bounded in time; calling it again is harmless.
    pub async fn disconnect(&self) {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Command::Disconnect(tx)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(3), rx).await;
        }
    }
}

struct EngineTask {
    base: Url,
    options: RoomOptions,
    shared: Arc<Shared>,
    events: mpsc::Sender<RoomEvent>,
    receiver: DataReceiver,
    /// A loss we wait on before acting: when, why, and whether ICE may still recover.
    pending_loss: Option<PendingLoss>,
    /// Whether `Reconnecting` was emitted for the current loss.
    announced_reconnecting: bool,
    /// When the publisher must be up by, if it is not yet.
    publisher_deadline: Option<tokio::time::Instant>,
    /// Packets whose sender is not announced yet, oldest first.
    held: std::collections::VecDeque<(tokio::time::Instant, crate::data::ReceivedData)>,
}

struct PendingLoss {
    at: tokio::time::Instant,
    message: String,
    ice: bool,
}

/// Why the running session ended.
enum Ended {
    /// We leave on our own (a `disconnect` call, or every handle dropped).
    Local(Option<oneshot::Sender<()>>),
    /// The server or the network ended it.
    Lost(FailureReason, String, LeaveAction),
}

impl EngineTask {
    async fn emit(&self, ev: RoomEvent) {
        let _ = self.events.send(ev).await;
    }

    async fn set_state(&self, state: ConnectionState, reason: FailureReason) {
        let changed = {
            let mut c = self.shared.conn.lock();
            let changed = c.0 != state;
            *c = (state, reason);
            changed
        };
        if changed {
            self.emit(RoomEvent::ConnectionStateChanged(state)).await;
        }
    }

    /// The publisher may come up after the join; it must within the ICE timeout.
    fn watch_publisher(&mut self, s: &Session) {
        self.publisher_deadline =
            (!s.publisher_ready).then(|| tokio::time::Instant::now() + self.options.ice_timeout);
    }

    async fn run(mut self, mut session: Session, mut cmd: mpsc::Receiver<Command>) {
        self.watch_publisher(&session);
        self.emit(RoomEvent::ConnectionStateChanged(
            ConnectionState::Connected,
        ))
        .await;
        loop {
            let (reason, message, action) = match self.drive(&mut session, &mut cmd).await {
                Ended::Local(reply) => {
                    self.teardown(Some(session)).await;
                    return self
                        .finish(ConnectionState::Disconnected, FailureReason::None, reply)
                        .await;
                }
                Ended::Lost(reason, message, action) => (reason, message, action),
            };
            log::info!("session lost ({reason}): {message}");
            let retry = action != LeaveAction::Disconnect && reason.is_retryable();
            self.announced_reconnecting = false;
            if retry && action == LeaveAction::Resume {
                match self.resume(&mut session, &mut cmd, reason).await {
                    Ok(()) => continue,
                    Err(Ended::Local(reply)) => {
                        self.teardown(Some(session)).await;
                        return self
                            .finish(ConnectionState::Disconnected, FailureReason::None, reply)
                            .await;
                    }
                    Err(Ended::Lost(r, m, _)) => log::info!("resume failed ({r}): {m}; rejoining"),
                }
            }
            self.teardown(Some(session)).await;
            if !retry {
                return self
                    .finish(ConnectionState::Disconnected, reason, None)
                    .await;
            }
            match self.rejoin(&mut cmd).await {
                Ok(s) => {
                    self.watch_publisher(&s);
                    session = s;
                }
                Err(Ended::Local(reply)) => {
                    return self
                        .finish(ConnectionState::Disconnected, FailureReason::None, reply)
                        .await;
                }
                Err(Ended::Lost(reason, message, _)) => {
                    log::warn!("giving up on the room ({reason}): {message}");
                    return self.finish(ConnectionState::Failed, reason, None).await;
                }
            }
        }
    }

    /// The room is over: the final state, the `Disconnected` event, and the answer to
    /// a `disconnect` call if one asked.
    async fn finish(
        &mut self,
        state: ConnectionState,
        reason: FailureReason,
        reply: Option<oneshot::Sender<()>>,
    ) {
        self.set_state(state, reason).await;
        self.emit(RoomEvent::Disconnected { reason }).await;
        if let Some(r) = reply {
            let _ = r.send(());
        }
    }

    /// Closes the session: a leave if we still can, then every socket and task.
    async fn teardown(&mut self, session: Option<Session>) {
        {
            let mut link = self.shared.link.lock().await;
            link.signal = None;
            link.publisher = None;
        }
        if let Some(s) = session {
            s.signal.close(Some(leave_request())).await;
        }
        self.pending_loss = None;
    }

    async fn announce_reconnecting(&mut self) {
        if !self.announced_reconnecting {
            self.announced_reconnecting = true;
            let reason = self.shared.conn.lock().1;
            self.set_state(ConnectionState::Reconnecting, reason).await;
            self.emit(RoomEvent::Reconnecting).await;
        }
    }

    /// Resumes the session after a loss: the same participant on a new signal
    /// connection, ICE restarted, and the reliable packets the server did not get sent
    /// again. Others in the room see nothing but a pause.
    async fn resume(
        &mut self,
        s: &mut Session,
        cmd: &mut mpsc::Receiver<Command>,
        cause: FailureReason,
    ) -> std::result::Result<(), Ended> {
        self.announce_reconnecting().await;
        self.pending_loss = None;
        let sid = self.shared.state.lock().local.sid.clone();
        let token = self.shared.token.lock().clone();
        // The old socket goes without a leave: the server keeps our session for us.
        s.signal.close(None).await;
        let resume = crate::signal::Resume {
            participant_sid: sid,
            // ReconnectReason: signal disconnected (1) or publisher failed (2).
            reason: if cause == FailureReason::Rtc { 2 } else { 1 },
        };
        let attempt = async {
            let (signal, first, rx) =
                SignalClient::connect(&self.base, &token, &self.options.join, Some(&resume))
                    .await?;
            let Resp::Reconnect(answer) = first else {
                return Err(Error::connect(
                    FailureReason::StateMismatch,
                    "the server did not resume the session",
                ));
            };
            s.signal = signal;
            s.signal_rx = rx;
            self.shared.link.lock().await.signal = Some(s.signal.clone());
            let offer = s.publisher.ice_restart_offer().await?;
            s.send_offer(offer).await?;
            s.wait_until_resumed().await?;
            Ok(answer.last_message_seq)
        };
        let result = tokio::select! {
            c = cmd.recv() => return Err(Ended::Local(c.map(|Command::Disconnect(r)| r))),
            r = tokio::time::timeout(self.options.ice_timeout, attempt) => r,
        };
        let last_seq = match result {
            Ok(Ok(seq)) => seq,
            Ok(Err(e)) => {
                return Err(Ended::Lost(
                    e.failure_reason(),
                    e.to_string(),
                    LeaveAction::Reconnect,
                ))
            }
            Err(_) => {
                return Err(Ended::Lost(
                    FailureReason::Rtc,
                    "resume timed out".into(),
                    LeaveAction::Reconnect,
                ))
            }
        };
        {
            let mut link = self.shared.link.lock().await;
            link.sender.acknowledge(last_seq);
            let again: Vec<Vec<u8>> = link.sender.unacknowledged().map(<[u8]>::to_vec).collect();
            if !again.is_empty() {
                log::info!(
                    "resending {} reliable packets the server did not get",
                    again.len()
                );
            }
            for bytes in again {
                // Replies are not awaited: the original senders were answered already.
                let _ = s.publisher.enqueue(DataKind::Reliable, bytes).await;
            }
        }
        self.set_state(ConnectionState::Connected, FailureReason::None)
            .await;
        self.emit(RoomEvent::Reconnected).await;
        Ok(())
    }

    async fn rejoin(
        &mut self,
        cmd: &mut mpsc::Receiver<Command>,
    ) -> std::result::Result<Session, Ended> {
        self.announce_reconnecting().await;
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            let Some(delay) = self.options.retry.next(attempt, started.elapsed()) else {
                return Err(Ended::Lost(
                    FailureReason::MaxRetries,
                    format!("{attempt} reconnection attempts failed"),
                    LeaveAction::Disconnect,
                ));
            };
            attempt += 1;
            tokio::select! {
                c = cmd.recv() => return Err(Ended::Local(c.map(|Command::Disconnect(r)| r))),
                _ = tokio::time::sleep(delay) => {}
            }
            let token = self.shared.token.lock().clone();
            let result = tokio::select! {
                c = cmd.recv() => return Err(Ended::Local(c.map(|Command::Disconnect(r)| r))),
                r = Session::establish(&self.base, &token, &self.options) => r,
            };
            match result {
                Ok(session) => {
                    let events = self.shared.state.lock().resync(&session.join);
                    {
                        let mut link = self.shared.link.lock().await;
                        link.signal = Some(session.signal.clone());
                        link.publisher = Some(session.publisher.clone());
                    }
                    self.set_state(ConnectionState::Connected, FailureReason::None)
                        .await;
                    for ev in events {
                        self.emit(ev).await;
                    }
                    self.emit(RoomEvent::Reconnected).await;
                    return Ok(session);
                }
                Err(e) => {
                    let reason = e.failure_reason();
                    log::info!("reconnection attempt {attempt} failed: {e}");
                    if !reason.is_retryable() {
                        return Err(Ended::Lost(reason, e.to_string(), LeaveAction::Disconnect));
                    }
                    self.shared.conn.lock().1 = reason;
                }
            }
        }
    }

    async fn drive(&mut self, s: &mut Session, cmd: &mut mpsc::Receiver<Command>) -> Ended {
        for item in std::mem::take(&mut s.backlog) {
            let r = match item {
                Backlog::Signal(m) => self.on_signal(s, *m).await,
                Backlog::Peer(role, ev) => self.on_peer(role, ev).await,
            };
            if let Err(e) = r {
                return e;
            }
        }
        let mut peers_gone = false;
        loop {
            let loss_at = self.pending_loss.as_ref().map(|l| l.at);
            let held_until = self.held.front().map(|(at, _)| *at + UNKNOWN_SENDER_HOLD);
            let r = tokio::select! {
                c = cmd.recv() => return Ended::Local(c.map(|Command::Disconnect(r)| r)),
                ev = s.signal_rx.recv() => match ev {
                    Some(SignalEvent::Message(m)) => self.on_signal(s, *m).await,
                    Some(SignalEvent::Closed { reason, message }) => Err(Ended::Lost(reason, message, LeaveAction::Resume)),
                    None => Err(Ended::Lost(FailureReason::SignalClose, "signal task ended".into(), LeaveAction::Resume)),
                },
                ev = s.peer_rx.recv(), if !peers_gone => match ev {
                    Some((role, ev)) => self.on_peer(role, ev).await,
                    None => {
                        peers_gone = true;
                        self.on_peer(PeerRole::Publisher, PeerEvent::Closed("peer connections ended".into())).await
                    }
                },
                _ = sleep_until_some(self.publisher_deadline) => {
                    Err(Ended::Lost(FailureReason::Rtc, "the publisher connection did not come up".into(), LeaveAction::Reconnect))
                }
                _ = sleep_until_some(held_until) => {
                    self.release_held(true).await;
                    Ok(())
                }
                _ = sleep_until_some(loss_at) => {
                    let message = self.pending_loss.take().map(|l| l.message).unwrap_or_default();
                    Err(Ended::Lost(FailureReason::Rtc, message, LeaveAction::Resume))
                }
            };
            if let Err(e) = r {
                return e;
            }
        }
    }

    async fn on_signal(&mut self, s: &mut Session, m: Resp) -> std::result::Result<(), Ended> {
        match s.negotiate(&m).await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => {
                return Err(Ended::Lost(
                    FailureReason::Rtc,
                    e.to_string(),
                    LeaveAction::Reconnect,
                ))
            }
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
                log::debug!(
                    "request {} answered: {:?} {}",
                    r.request_id,
                    r.reason,
                    r.message
                );
                let waiter = self.shared.requests.lock().remove(&r.request_id);
                if let Some(waiter) = waiter {
                    let ok = r.reason == proto::request_response::Reason::Ok as i32;
                    let reason = proto::request_response::Reason::try_from(r.reason)
                        .map(|x| x.as_str_name().to_owned())
                        .unwrap_or_else(|_| r.reason.to_string());
                    let _ = waiter.send(if ok {
                        Ok(())
                    } else if r.message.is_empty() {
                        Err(reason)
                    } else {
                        Err(format!("{reason}: {}", r.message))
                    });
                }
                vec![]
            }
            Resp::RefreshToken(token) => {
                *self.shared.token.lock() = token.clone();
                vec![RoomEvent::TokenRefreshed(token)]
            }
            Resp::Leave(l) => {
                let action = LeaveAction::from_request(l.action, l.can_reconnect);
                let fallback = match action {
                    LeaveAction::Disconnect => FailureReason::Other,
                    _ => FailureReason::SignalClose,
                };
                let reason = FailureReason::from_leave(l.reason, fallback);
                return Err(Ended::Lost(
                    reason,
                    format!("the server asked us to leave ({reason})"),
                    action,
                ));
            }
            other => {
                log::trace!("unhandled signal message: {other:?}");
                vec![]
            }
        };
        for ev in events {
            self.emit(ev).await;
        }
        if !self.held.is_empty() {
            self.release_held(false).await;
        }
        Ok(())
    }

    /// Delivers held packets in order while their sender is known (or, with
    /// `expired`, once they have waited long enough).
    async fn release_held(&mut self, expired: bool) {
        let now = tokio::time::Instant::now();
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
                self.emit(RoomEvent::DataReceived(d)).await;
            }
        }
    }

    async fn on_peer(&mut self, role: PeerRole, ev: PeerEvent) -> std::result::Result<(), Ended> {
        match ev {
            PeerEvent::Data { kind, bytes } => {
                match self
                    .receiver
                    .decode(&bytes, kind == DataKind::Lossy, Instant::now())
                {
                    Ok(Incoming::User(d)) => {
                        let known = {
                            let st = self.shared.state.lock();
                            d.participant_identity.is_empty()
                                || d.participant_identity == st.local.identity
                                || st.remotes.contains_key(&d.participant_identity)
                        };
                        if known && self.held.is_empty() {
                            self.emit(RoomEvent::DataReceived(d)).await;
                        } else {
                            self.held.push_back((tokio::time::Instant::now(), d));
                            self.release_held(false).await;
                        }
                    }
                    Ok(Incoming::Other(p)) => self.emit(RoomEvent::DataPacket(p)).await,
                    Ok(Incoming::Duplicate) => {}
                    Err(e) => log::warn!("dropping data packet: {e}"),
                }
            }
            PeerEvent::IceState(state) => {
                use str0m::IceConnectionState as S;
                match state {
                    S::Disconnected if self.pending_loss.is_none() => {
                        self.pending_loss = Some(PendingLoss {
                            at: tokio::time::Instant::now() + ICE_LOST_TIMEOUT,
                            message: format!("{role:?} ICE connection lost"),
                            ice: true,
                        });
                    }
                    S::Connected | S::Completed
                        if self.pending_loss.as_ref().is_some_and(|l| l.ice) =>
                    {
                        self.pending_loss = None;
                    }
                    _ => {}
                }
            }
            PeerEvent::Closed(why) => {
                let at = tokio::time::Instant::now() + LEAVE_GRACE;
                let earlier = self.pending_loss.as_ref().is_none_or(|l| l.at > at);
                if earlier {
                    self.pending_loss = Some(PendingLoss {
                        at,
                        message: format!("{role:?} peer connection closed: {why}"),
                        ice: false,
                    });
                }
            }
            PeerEvent::ChannelOpen(DataKind::Reliable) if role == PeerRole::Publisher => {
                self.publisher_deadline = None;
            }
            PeerEvent::Connected | PeerEvent::ChannelOpen(_) => {}
        }
        Ok(())
    }
}

async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
