//! The one task of a room: owns its signal connection and peer connections, feeds
//! the [`Engine`] what they report and carries out the actions it returns.
//!
//! Nothing here decides anything; every branch is "do what the machine said" or
//! "tell the machine what happened". The signal dial runs alongside, so the peers'
//! events keep flowing while a resume or rejoin connects.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use livekit_protocol as proto;
use proto::signal_request::Message as Req;
use proto::signal_response::Message as Resp;
use tokio::sync::{mpsc, oneshot};
use url::Url;

use super::io::{Action, Input};
use crate::ice::IceConfig;

/// How long a disconnect waits for published data to be acknowledged.
const FLUSH_ON_LEAVE: std::time::Duration = std::time::Duration::from_secs(2);
use super::machine::Engine;
use super::media::PublishError;
use super::requests::RequestError;
use super::{Command, RoomOptions, SessionStats, Shared};
use crate::audio::{LocalAudioTrack, RemoteAudioTrack};
use crate::error::{Error, Result};
use crate::peer::{route_ip, PeerConnection, PeerEvent, PeerRole};
use crate::room::RoomEvent;
use crate::signal::{leave_request, leave_with, SignalClient, SignalEvent};
use crate::state::FailureReason;

type Dialed = Result<(SignalClient, Resp, mpsc::Receiver<SignalEvent>)>;

/// A signal dial under way (its own task, so the room's events keep flowing);
/// dropping it abandons the dial, and a session the server already accepted leaves.
struct Dialing(tokio::task::JoinHandle<(bool, Dialed)>);

impl Drop for Dialing {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(super) struct Driver {
    engine: Engine,
    base: Url,
    options: RoomOptions,
    shared: Arc<Shared>,
    events: mpsc::Sender<RoomEvent>,
    cmd: mpsc::Receiver<Command>,
    join: Option<oneshot::Sender<Result<()>>>,
    dialing: Option<Dialing>,
    signal: Option<SignalClient>,
    signal_rx: Option<mpsc::Receiver<SignalEvent>>,
    publisher: Option<PeerConnection>,
    subscriber: Option<PeerConnection>,
    peer_rx: Option<mpsc::Receiver<(PeerRole, PeerEvent)>>,
    requests: HashMap<u32, oneshot::Sender<std::result::Result<(), RequestError>>>,
    leaving: Vec<oneshot::Sender<()>>,
    /// What our leave tells the others.
    leave_reason: proto::DisconnectReason,
    /// Our tracks by cid (with their DTX choice), asked for or published.
    local_tracks: HashMap<String, (LocalAudioTrack, bool)>,
    publishing:
        HashMap<String, oneshot::Sender<std::result::Result<proto::TrackInfo, PublishError>>>,
    /// The ICE servers and policy of the session joined last (the user's options
    /// merged with the server's join).
    session_ice: IceConfig,
}

impl Driver {
    pub(super) fn new(
        engine: Engine,
        base: Url,
        options: RoomOptions,
        shared: Arc<Shared>,
        events: mpsc::Sender<RoomEvent>,
        cmd: mpsc::Receiver<Command>,
        join: oneshot::Sender<Result<()>>,
    ) -> Self {
        Self {
            engine,
            base,
            options,
            shared,
            events,
            cmd,
            join: Some(join),
            dialing: None,
            signal: None,
            signal_rx: None,
            publisher: None,
            subscriber: None,
            peer_rx: None,
            requests: HashMap::new(),
            leaving: Vec::new(),
            leave_reason: proto::DisconnectReason::ClientInitiated,
            local_tracks: HashMap::new(),
            session_ice: IceConfig::default(),
            publishing: HashMap::new(),
        }
    }

    pub(super) async fn run(mut self) {
        loop {
            while let Some(action) = self.engine.poll_action() {
                if let Some(input) = self.execute(action).await {
                    self.engine.handle_input(Instant::now(), input);
                }
            }
            if self.engine.is_closed() {
                break;
            }
            let deadline = self.engine.deadline();
            let input = tokio::select! {
                c = self.cmd.recv() => match c {
                    Some(Command::Disconnect(reply, reason)) => {
                        self.leaving.push(reply);
                        self.leave_reason = reason;
                        self.flush_before_leaving().await;
                        Input::Leave
                    }
                    Some(Command::Signal(req)) => {
                        self.send_signal(*req).await;
                        continue;
                    }
                    Some(Command::Update(req, reply)) => {
                        let id = self.engine.request_update(Instant::now(), req);
                        self.requests.insert(id, reply);
                        continue;
                    }
                    Some(Command::Publish { track, request, dtx, reply }) => {
                        let cid = request.cid.clone();
                        if self.local_tracks.contains_key(&cid) {
                            let _ = reply.send(Err(PublishError::Duplicate));
                            continue;
                        }
                        self.local_tracks.insert(cid.clone(), (track, dtx));
                        self.publishing.insert(cid, reply);
                        self.engine.publish(Instant::now(), request);
                        continue;
                    }
                    Some(Command::Unpublish(sid, reply)) => {
                        let _ = reply.send(self.engine.unpublish(&sid));
                        continue;
                    }
                    Some(Command::Stats(reply)) => {
                        let stats = self.stats().await;
                        let _ = reply.send(stats);
                        continue;
                    }
                    Some(Command::Mute(sid, muted, reply)) => {
                        let cid = self.engine.local_cid(&sid);
                        if let Some((track, _)) = cid.and_then(|c| self.local_tracks.get(&c)) {
                            track.set_muted(muted);
                        }
                        let _ = reply.send(self.engine.mute(&sid, muted));
                        continue;
                    }
                    // Every handle is gone, or the caller of a join gave up on it.
                    None => Input::Leave,
                },
                (resume, dialed) = next_dial(&mut self.dialing) => {
                    self.dialing = None;
                    self.dialed(resume, dialed).await
                }
                ev = next(&mut self.signal_rx) => match ev {
                    Some(SignalEvent::Message(m)) => Input::Signal(m),
                    Some(SignalEvent::Closed { reason, message }) => {
                        self.signal_rx = None;
                        Input::SignalClosed { reason, message }
                    }
                    None => {
                        self.signal_rx = None;
                        Input::SignalClosed {
                            reason: FailureReason::SignalClose,
                            message: "the signal task ended".into(),
                        }
                    }
                },
                ev = next(&mut self.peer_rx) => match ev {
                    Some((_, PeerEvent::AudioTrack { mid, track_id, sending })) => {
                        self.remote_audio(mid, track_id, sending).await
                    }
                    Some((role, PeerEvent::LocalCandidate(candidate))) => {
                        self.trickle_gathered(role, candidate).await;
                        continue;
                    }
                    Some((role, ev)) => Input::Peer(role, ev),
                    None => {
                        self.peer_rx = None;
                        Input::Peer(PeerRole::Publisher, PeerEvent::Closed("peer connections ended".into()))
                    }
                },
                _ = sleep_until(deadline) => {
                    self.engine.handle_timeout(Instant::now());
                    continue;
                }
            };
            self.engine.handle_input(Instant::now(), input);
        }
        self.shared.outbox.close();
        for (track, _) in self.local_tracks.values() {
            track.stop();
        }
        for reply in self.leaving.drain(..) {
            let _ = reply.send(());
        }
    }

    /// Carries out one action; some answer at once with the input they produce.
    async fn execute(&mut self, action: Action) -> Option<Input> {
        match action {
            Action::OpenSignal { resume } => {
                let (base, options) = (self.base.clone(), self.options.join.clone());
                let token = self.shared.token.lock().clone();
                self.dialing = Some(Dialing(tokio::spawn(async move {
                    let dialed =
                        SignalClient::connect(&base, &token, &options, resume.as_ref()).await;
                    (resume.is_some(), dialed)
                })));
            }
            Action::CloseSignal { leave } => {
                self.signal_rx = None;
                log::debug!(
                    "closing the signal connection (leave: {leave}, open: {})",
                    self.signal.is_some()
                );
                if let Some(signal) = self.signal.take() {
                    signal
                        .close(leave.then(|| leave_with(self.leave_reason)))
                        .await;
                }
            }
            Action::NewPeers => return self.new_peers().await.err(),
            Action::DropPeers => {
                *self.shared.media_input.lock() = None;
                // A dial under way belongs to the session being closed.
                self.dialing = None;
                self.publisher = None;
                self.subscriber = None;
                self.peer_rx = None;
            }
            Action::SendSignal(req) => self.send_signal(*req).await,
            Action::CreateOffer { ice_restart } => {
                let publisher = self.publisher.as_ref()?;
                let offer = if ice_restart {
                    publisher.ice_restart_offer().await.map(Some)
                } else {
                    publisher.create_offer().await
                };
                return Some(match offer {
                    Ok(sdp) => Input::LocalOffer(sdp),
                    Err(e) => Input::PeerFailed(PeerRole::Publisher, e.to_string()),
                });
            }
            Action::AcceptAnswer(sdp) => {
                let publisher = self.publisher.as_ref()?;
                if let Err(e) = publisher.accept_answer(sdp).await {
                    return Some(Input::PeerFailed(PeerRole::Publisher, e.to_string()));
                }
            }
            Action::AcceptOffer { sdp, id } => {
                let subscriber = self.subscriber.as_ref()?;
                return Some(match subscriber.accept_offer(sdp).await {
                    Ok(sdp) => Input::LocalAnswer { sdp, id },
                    Err(e) => Input::PeerFailed(PeerRole::Subscriber, e.to_string()),
                });
            }
            Action::AddRemoteCandidate(role, init) => {
                if let Err(e) = self.peer(role)?.add_remote_candidate(&init).await {
                    log::warn!("ignoring remote candidate: {e}");
                }
            }
            Action::TrickleLocal { role, mid, index } => {
                let target = match role {
                    PeerRole::Publisher => proto::SignalTarget::Publisher,
                    PeerRole::Subscriber => proto::SignalTarget::Subscriber,
                };
                for candidate_init in self.peer(role)?.local_candidate_inits(&mid, index) {
                    self.send_signal(Req::Trickle(proto::TrickleRequest {
                        candidate_init,
                        target: target as i32,
                        ..Default::default()
                    }))
                    .await;
                }
            }
            Action::Emit(ev) => {
                let _ = self.events.send(ev).await;
            }
            Action::ResendAfter(last_seq) => {
                let again = {
                    let mut outbox = self.shared.outbox.lock();
                    outbox.acknowledge(last_seq);
                    outbox.requeue_unacknowledged()
                };
                if again > 0 {
                    log::info!("resending {again} reliable packets the server did not get");
                }
                self.shared.outbox.wake();
            }
            Action::ForgetSent => self.shared.outbox.lock().forget_sent(),
            Action::JoinResult(result) => {
                if let Some(join) = self.join.take() {
                    let _ = join.send(result);
                }
            }
            Action::RequestDone { id, result } => {
                if let Some(reply) = self.requests.remove(&id) {
                    let _ = reply.send(result);
                }
            }
            Action::StartSending { cid } => {
                let (Some(publisher), Some((track, dtx))) =
                    (self.publisher.as_ref(), self.local_tracks.get(&cid))
                else {
                    return None;
                };
                if let Err(e) = publisher.add_audio(&cid).await {
                    return Some(Input::PeerFailed(PeerRole::Publisher, e.to_string()));
                }
                track.start(self.shared.media_input.clone(), *dtx);
            }
            Action::StopSending { cid, forget } => {
                let track = if forget {
                    self.local_tracks.remove(&cid).map(|(t, _)| t)
                } else {
                    self.local_tracks.get(&cid).map(|(t, _)| t.clone())
                };
                if let Some(track) = track {
                    track.stop();
                }
                if let Some(publisher) = &self.publisher {
                    let _ = publisher.remove_audio(&cid).await;
                }
            }
            Action::MuteLocal { cid, muted } => {
                if let Some((track, _)) = self.local_tracks.get(&cid) {
                    track.set_muted(muted);
                }
            }
            Action::PublishDone { cid, result } => {
                if result.is_err() {
                    self.local_tracks.remove(&cid);
                }
                if let Some(reply) = self.publishing.remove(&cid) {
                    let _ = reply.send(result);
                }
            }
            Action::Finished => {}
        }
        None
    }

    /// Gives data already published a moment to reach the server before the leave
    /// closes everything: `publish_data` resolving and then `disconnect` must not
    /// lose the packet. Bounded, and skipped when there is no publisher.
    async fn flush_before_leaving(&mut self) {
        if let Some(publisher) = &self.publisher {
            let _ = tokio::time::timeout(FLUSH_ON_LEAVE, publisher.flush()).await;
        }
    }

    fn peer(&self, role: PeerRole) -> Option<&PeerConnection> {
        match role {
            PeerRole::Publisher => self.publisher.as_ref(),
            PeerRole::Subscriber => self.subscriber.as_ref(),
        }
    }

    async fn send_signal(&self, req: Req) {
        if let Some(signal) = &self.signal {
            // A closed connection reports itself through its events.
            if let Err(e) = signal.send(req).await {
                log::debug!("signal request not sent: {e}");
            }
        }
    }

    /// A dial finished: the machine learns which session it got.
    async fn dialed(&mut self, resume: bool, dialed: Dialed) -> Input {
        let (signal, first, rx) = match dialed {
            Ok(d) => d,
            Err(e) => return Input::SignalFailed(e),
        };
        match (first, resume) {
            (Resp::Join(join), false) => {
                self.session_ice = IceConfig::for_session(
                    &self.options.ice,
                    &join.ice_servers,
                    join.client_configuration.as_ref(),
                );
                self.signal = Some(signal);
                self.signal_rx = Some(rx);
                Input::Joined(Box::new(join))
            }
            (Resp::Reconnect(answer), true) => {
                self.signal = Some(signal);
                self.signal_rx = Some(rx);
                Input::Resumed(answer)
            }
            _ => {
                signal.close(Some(leave_request())).await;
                Input::SignalFailed(Error::connect(
                    FailureReason::StateMismatch,
                    "the server answered with another session than asked for",
                ))
            }
        }
    }

    async fn new_peers(&mut self) -> std::result::Result<(), Input> {
        self.publisher = None;
        self.subscriber = None;
        let local_ip = local_ip_for(&self.base).await;
        let (tx, rx) = mpsc::channel(1024);
        self.peer_rx = Some(rx);
        let failed = |role, e: Error| Input::PeerFailed(role, e.to_string());
        let outbox = Some(self.shared.outbox.clone());
        let ice = &self.session_ice;
        let publisher = PeerConnection::new(PeerRole::Publisher, local_ip, ice, tx.clone(), outbox)
            .await
            .map_err(|e| failed(PeerRole::Publisher, e))?;
        *self.shared.media_input.lock() = Some(publisher.media_input());
        self.publisher = Some(publisher);
        self.subscriber = Some(
            PeerConnection::new(PeerRole::Subscriber, local_ip, ice, tx, None)
                .await
                .map_err(|e| failed(PeerRole::Subscriber, e))?,
        );
        Ok(())
    }
}

impl Driver {
    async fn stats(&self) -> SessionStats {
        let of = |p: Option<&PeerConnection>| {
            let p = p.cloned();
            async move {
                match p {
                    Some(p) => p.stats().await.ok(),
                    None => None,
                }
            }
        };
        let (publisher, subscriber) =
            tokio::join!(of(self.publisher.as_ref()), of(self.subscriber.as_ref()));
        SessionStats {
            publisher,
            subscriber,
        }
    }

    /// A candidate found after the peer started: the server hears of it now if the
    /// transport's m-line is known, else with the next offer or answer.
    async fn trickle_gathered(&mut self, role: PeerRole, candidate: String) {
        log::debug!("{role:?}: gathered {candidate}");
        let Some(candidate_init) = self.peer(role).and_then(|p| p.gathered(candidate)) else {
            return;
        };
        let target = match role {
            PeerRole::Publisher => proto::SignalTarget::Publisher,
            PeerRole::Subscriber => proto::SignalTarget::Subscriber,
        };
        self.send_signal(Req::Trickle(proto::TrickleRequest {
            candidate_init,
            target: target as i32,
            ..Default::default()
        }))
        .await;
    }

    /// The subscriber's media `mid` began or stopped carrying a track: a decoder
    /// for it starts here, and the machine decides what the user is told.
    async fn remote_audio(&mut self, mid: String, sid: String, sending: bool) -> Input {
        if !sending {
            if let Some(subscriber) = &self.subscriber {
                let _ = subscriber.route_audio(&mid, None).await;
            }
            return Input::RemoteAudio {
                mid,
                sid,
                track: None,
            };
        }
        let (track, packets) = RemoteAudioTrack::new(&sid);
        if let Some(subscriber) = &self.subscriber {
            let _ = subscriber.route_audio(&mid, Some(packets)).await;
        }
        Input::RemoteAudio {
            mid,
            sid,
            track: Some(track),
        }
    }
}

/// The local address that routes to the server: the host candidate we offer.
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

async fn next<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn next_dial(dialing: &mut Option<Dialing>) -> (bool, Dialed) {
    match dialing {
        Some(d) => match (&mut d.0).await {
            Ok(done) => done,
            Err(e) => (false, Err(Error::Signal(format!("the dial ended: {e}")))),
        },
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}
