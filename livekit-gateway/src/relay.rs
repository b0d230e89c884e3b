//! The gateway's side of the link: each device's session held in a real room.
//!
//! A device says Hello (its id), then Connect (URL and token); the gateway joins the
//! room on the host core with data relaying on ([`RoomOptions::relay_data`]): RPC and
//! stream packets are not handled here but passed on verbatim, both ways, since the
//! device runs that logic itself. The room's reconnections (resume, full rejoin) are
//! the core's; the device only hears the states.
//!
//! A link that drops does not end the session at once: for `session_grace` the room
//! stays joined and what arrives for the device is kept (boundedly), so a device that
//! comes back with the same id, URL and token finds its session as it left it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use livekit_core::link::{self, proto as lp, Decoder, Msg};
use livekit_core::packet::{self, data_packet};
use livekit_ffi::{
    ConnectionState, DataKind, FailureReason, Room, RoomEvent, RoomOptions, UserData,
};
use parking_lot::Mutex;
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// How the gateway holds sessions.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// Named in `Welcome`.
    pub name: String,
    /// How long a session outlives its link.
    pub session_grace: Duration,
    /// A link that says nothing for this long is dropped (devices ping every 2 s).
    pub link_timeout: Duration,
    /// Frames kept for a device whose link is down; past it the oldest go.
    pub max_held_frames: usize,
    /// Options of the rooms joined for devices (`relay_data` is always set).
    pub room: RoomOptions,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            name: String::from("livekit-gateway"),
            session_grace: Duration::from_secs(30),
            link_timeout: Duration::from_secs(10),
            max_held_frames: 1024,
            room: RoomOptions::default(),
        }
    }
}

/// Where a session's frames go: the device's current link, or a queue until it comes
/// back.
struct Outlet {
    link: Option<(u64, mpsc::Sender<Vec<u8>>)>,
    held: VecDeque<Vec<u8>>,
    /// Frames dropped because the device's link was behind.
    dropped: u64,
}

/// Frames waiting to be written to one link. A device on a slow line (a serial port
/// at 115200 baud moves about 11 kB/s) cannot take a busy room's traffic; past this,
/// frames for it are dropped (and counted) rather than held without bound.
const LINK_QUEUE_FRAMES: usize = 1024;

struct Session {
    url: String,
    token: String,
    room: Mutex<Option<Room>>,
    outlet: Mutex<Outlet>,
    max_held: usize,
    /// The last state told to the device (told again to a link that comes back).
    state: Mutex<(ConnectionState, FailureReason)>,
    /// The join's answer, told again to a link that comes back.
    joined: Mutex<Option<lp::Joined>>,
}

impl Session {
    fn send(&self, m: Msg) {
        let Some(frame) = link::frame(m) else {
            log::warn!("a frame for the device is too large for the link: dropped");
            return;
        };
        let mut out = self.outlet.lock();
        if let Some((_, tx)) = &out.link {
            match tx.try_send(frame) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    out.dropped += 1;
                    if out.dropped.is_power_of_two() {
                        log::warn!(
                            "a device's link is behind: {} frames for it dropped so far",
                            out.dropped
                        );
                    }
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(f)) => {
                    out.link = None;
                    return self.hold(&mut out, f);
                }
            }
        }
        self.hold(&mut out, frame);
    }

    /// Keeps a frame for a device whose link is down (the oldest go past the bound).
    fn hold(&self, out: &mut Outlet, frame: Vec<u8>) {
        if out.held.len() >= self.max_held {
            out.held.pop_front();
            out.dropped += 1;
        }
        out.held.push_back(frame);
    }

    fn tell_state(&self, state: ConnectionState, reason: FailureReason) {
        *self.state.lock() = (state, reason);
        self.send(Msg::State(lp::State {
            state: state as u32,
            failure_reason: reason as u32,
        }));
    }

    fn room(&self) -> Option<Room> {
        self.room.lock().clone()
    }
}

/// Holds the sessions of any number of devices; cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    options: Arc<GatewayOptions>,
    sessions: Arc<Mutex<HashMap<String, Arc<Session>>>>,
    next_link: Arc<std::sync::atomic::AtomicU64>,
}

impl Gateway {
    pub fn new(mut options: GatewayOptions) -> Self {
        options.room.relay_data = true;
        Self {
            options: Arc::new(options),
            sessions: Arc::new(Mutex::new(HashMap::new())),
            next_link: Arc::new(std::sync::atomic::AtomicU64::new(1)),
        }
    }

    /// Devices with a session (joined, joining, or in their grace period).
    pub fn session_count(&self) -> usize {
        self.sessions.lock().len()
    }

    /// Serves links accepted on `listener` until it fails.
    pub async fn serve(&self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        loop {
            let (stream, peer) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            log::info!("device link from {peer}");
            let me = self.clone();
            tokio::spawn(async move { me.handle_link(stream).await });
        }
    }

    /// Runs one link (TCP, a serial port, an in-process pipe) until it ends.
    pub async fn handle_link<S>(&self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let link_id = self
            .next_link
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (mut rd, mut wr) = tokio::io::split(stream);
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(LINK_QUEUE_FRAMES);
        let writer = tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                if wr.write_all(&frame).await.is_err() {
                    break;
                }
                let _ = wr.flush().await;
            }
            let _ = wr.shutdown().await;
        });
        let mut link = Link {
            id: link_id,
            tx,
            device: None,
            session: None,
        };
        let mut decoder = Decoder::new();
        let mut buf = vec![0u8; 4096];
        loop {
            let read = tokio::time::timeout(self.options.link_timeout, rd.read(&mut buf)).await;
            let n = match read {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => n,
                Err(_) => {
                    log::info!("device link {link_id} silent: dropped");
                    break;
                }
            };
            decoder.push(&buf[..n]);
            let mut end = false;
            while let Some(next) = decoder.next_message() {
                match next {
                    Ok(lp::LinkMessage { message: Some(m) }) => {
                        if !self.on_message(&mut link, m).await {
                            end = true;
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => log::debug!("device link {link_id}: {e}"),
                }
            }
            if end {
                break;
            }
        }
        self.detach(&link);
        drop(link);
        let _ = writer.await;
    }

    /// `false` when the link should end.
    async fn on_message(&self, link: &mut Link, m: Msg) -> bool {
        match m {
            Msg::Hello(h) => {
                if h.version != u32::from(link::VERSION) {
                    link.reply(Msg::Refused(lp::Refused {
                        reason: format!(
                            "link version {} is not spoken here (version {})",
                            h.version,
                            link::VERSION
                        ),
                    }));
                    return false;
                }
                let unix_time_ms = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0);
                link.device = Some(h.device_id);
                link.reply(Msg::Welcome(lp::Welcome {
                    version: u32::from(link::VERSION),
                    gateway: self.options.name.clone(),
                    unix_time_ms,
                }));
            }
            Msg::Connect(c) => {
                let Some(device) = link.device.clone() else {
                    link.reply(Msg::Refused(lp::Refused {
                        reason: "Hello first".into(),
                    }));
                    return false;
                };
                self.connect(link, device, c);
            }
            Msg::Close(_) => {
                if let Some(device) = &link.device {
                    let session = self.sessions.lock().remove(device);
                    if let Some(s) = session {
                        let room = s.room.lock().take();
                        if let Some(room) = room {
                            room.disconnect().await;
                        }
                        s.tell_state(ConnectionState::Disconnected, FailureReason::None);
                    }
                }
                link.session = None;
            }
            Msg::Packet(p) => match &link.session {
                Some(s) => relay_to_room(s, p),
                None => log::debug!("a packet from a device without a room: dropped"),
            },
            Msg::Ping(p) => link.reply(Msg::Pong(lp::Pong { id: p.id })),
            _ => {}
        }
        true
    }

    fn connect(&self, link: &mut Link, device: String, c: lp::Connect) {
        let existing = self.sessions.lock().get(&device).cloned();
        if let Some(s) = existing {
            if s.url == c.url && s.token == c.token {
                // The device is back: its session goes on where it was.
                self.attach(link, &s);
                if let Some(joined) = s.joined.lock().clone() {
                    s.send(Msg::Joined(joined));
                }
                let (state, reason) = *s.state.lock();
                s.tell_state(state, reason);
                return;
            }
            // Another room (or a new token): the old session ends first.
            self.end_session(&device, &s);
        }
        let session = Arc::new(Session {
            url: c.url.clone(),
            token: c.token.clone(),
            room: Mutex::new(None),
            outlet: Mutex::new(Outlet {
                link: None,
                held: VecDeque::new(),
                dropped: 0,
            }),
            max_held: self.options.max_held_frames,
            state: Mutex::new((ConnectionState::Connecting, FailureReason::None)),
            joined: Mutex::new(None),
        });
        self.sessions.lock().insert(device.clone(), session.clone());
        self.attach(link, &session);
        session.tell_state(ConnectionState::Connecting, FailureReason::None);
        let options = self.options.room.clone();
        let sessions = self.sessions.clone();
        tokio::spawn(async move {
            match Room::connect(&c.url, &c.token, options).await {
                Ok((room, events)) => {
                    let still_wanted = sessions
                        .lock()
                        .get(&device)
                        .is_some_and(|s| Arc::ptr_eq(s, &session));
                    if !still_wanted {
                        room.disconnect().await;
                        return;
                    }
                    let local = room.local_participant();
                    let joined = lp::Joined {
                        room: room.info().name,
                        identity: local.identity.clone(),
                        sid: local.sid.clone(),
                        participants: room
                            .remote_participants()
                            .into_iter()
                            .map(|p| p.identity)
                            .collect(),
                    };
                    log::info!(
                        "device {device} joined {:?} as {}",
                        joined.room,
                        joined.identity
                    );
                    *session.joined.lock() = Some(joined.clone());
                    *session.room.lock() = Some(room.clone());
                    session.send(Msg::Joined(joined));
                    session.tell_state(ConnectionState::Connected, FailureReason::None);
                    pump(&session, &room, events).await;
                    let mut all = sessions.lock();
                    if all.get(&device).is_some_and(|s| Arc::ptr_eq(s, &session)) {
                        all.remove(&device);
                    }
                }
                Err(e) => {
                    log::info!("device {device} could not join: {e}");
                    session.tell_state(ConnectionState::Failed, e.failure_reason());
                    let mut all = sessions.lock();
                    if all.get(&device).is_some_and(|s| Arc::ptr_eq(s, &session)) {
                        all.remove(&device);
                    }
                }
            }
        });
    }

    fn attach(&self, link: &mut Link, s: &Arc<Session>) {
        let mut out = s.outlet.lock();
        for frame in out.held.drain(..) {
            let _ = link.tx.try_send(frame);
        }
        out.link = Some((link.id, link.tx.clone()));
        link.session = Some(s.clone());
    }

    /// The link ended: its session waits for the device for a while, then leaves.
    fn detach(&self, link: &Link) {
        let (Some(device), Some(session)) = (&link.device, &link.session) else {
            return;
        };
        {
            let mut out = session.outlet.lock();
            if !matches!(out.link, Some((id, _)) if id == link.id) {
                return; // a newer link has it
            }
            out.link = None;
        }
        let me = self.clone();
        let device = device.clone();
        let session = session.clone();
        let grace = self.options.session_grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if session.outlet.lock().link.is_none() {
                log::info!("device {device} did not come back: leaving its room");
                me.end_session(&device, &session);
            }
        });
    }

    fn end_session(&self, device: &str, s: &Arc<Session>) {
        {
            let mut all = self.sessions.lock();
            if all.get(device).is_some_and(|x| Arc::ptr_eq(x, s)) {
                all.remove(device);
            }
        }
        let room = s.room.lock().take();
        if let Some(room) = room {
            tokio::spawn(async move { room.disconnect().await });
        }
    }
}

/// One device link as the gateway sees it.
struct Link {
    id: u64,
    tx: mpsc::Sender<Vec<u8>>,
    device: Option<String>,
    session: Option<Arc<Session>>,
}

impl Link {
    fn reply(&self, m: Msg) {
        if let Some(frame) = link::frame(m) {
            let _ = self.tx.try_send(frame);
        }
    }
}

/// A device's packet into its room, as the device built it (the core numbers
/// reliable packets and resends them across a resume).
fn relay_to_room(s: &Session, p: lp::Packet) {
    let Some(room) = s.room() else {
        log::debug!("a packet from a device whose room is not joined yet: dropped");
        return;
    };
    let Ok(packet) = packet::DataPacket::decode(p.data.as_slice()) else {
        log::warn!("a device sent a packet that is not a DataPacket: dropped");
        return;
    };
    let kind = DataKind::from_packet_kind(p.kind as i32);
    let done: livekit_ffi::Done = Box::new(|r| {
        if let Err(e) = r {
            log::warn!("a device's packet was not sent: {e}");
        }
    });
    let sent = match packet.value {
        Some(data_packet::Value::User(u)) => {
            let destinations = if packet.destination_identities.is_empty() {
                u.destination_identities
            } else {
                packet.destination_identities
            };
            room.send_data(
                UserData {
                    payload: u.payload,
                    topic: u.topic,
                    destination_identities: destinations,
                },
                kind,
                done,
            )
        }
        Some(value) => room.send_packet_as(value, packet.destination_identities, kind, done),
        None => return,
    };
    if let Err(e) = sent {
        log::warn!("a device's packet was refused: {e}");
    }
}

/// The room's events, as the device needs them, until the room ends.
async fn pump(s: &Session, room: &Room, mut events: mpsc::Receiver<RoomEvent>) {
    while let Some(ev) = events.recv().await {
        match ev {
            // The end comes with its reason as `Disconnected`, next.
            RoomEvent::ConnectionStateChanged(ConnectionState::Disconnected) => {}
            RoomEvent::ConnectionStateChanged(state) => {
                s.tell_state(state, room.failure_reason());
            }
            RoomEvent::Disconnected { reason } => {
                let state = match room.connection_state() {
                    ConnectionState::Failed => ConnectionState::Failed,
                    _ => ConnectionState::Disconnected,
                };
                s.tell_state(state, reason);
                return;
            }
            RoomEvent::DataReceived(d) => {
                let kind = d.kind;
                let p = packet::DataPacket {
                    kind: kind.packet_kind() as i32,
                    participant_identity: d.participant_identity.clone(),
                    participant_sid: d.participant_sid.clone(),
                    value: Some(data_packet::Value::User(packet::UserPacket {
                        participant_identity: d.participant_identity,
                        participant_sid: d.participant_sid,
                        payload: d.payload,
                        topic: d.topic,
                        ..Default::default()
                    })),
                    ..Default::default()
                };
                s.send(Msg::Packet(lp::Packet {
                    kind: kind.packet_kind() as u32,
                    data: p.encode_to_vec(),
                }));
            }
            RoomEvent::DataPacket(p) => {
                let kind = p.kind as u32;
                s.send(Msg::Packet(lp::Packet {
                    kind,
                    data: p.encode_to_vec(),
                }));
            }
            RoomEvent::ParticipantDisconnected { participant, .. } => {
                s.send(Msg::ParticipantLeft(lp::ParticipantLeft {
                    identity: participant.identity,
                }));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::DuplexStream;

    async fn next(link: &mut DuplexStream, dec: &mut Decoder) -> Msg {
        let mut buf = [0u8; 1024];
        loop {
            if let Some(m) = dec.next_message() {
                return m.unwrap().message.unwrap();
            }
            let n = tokio::time::timeout(Duration::from_secs(5), link.read(&mut buf))
                .await
                .expect("an answer")
                .unwrap();
            assert!(n > 0, "the gateway closed the link");
            dec.push(&buf[..n]);
        }
    }

    fn hello(version: u32) -> Vec<u8> {
        link::frame(Msg::Hello(lp::Hello {
            version,
            device_id: "d".into(),
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn a_device_is_welcomed_through_line_noise_and_other_versions_are_refused() {
        let gateway = Gateway::new(GatewayOptions::default());
        let (mut ours, theirs) = tokio::io::duplex(4096);
        let g = gateway.clone();
        tokio::spawn(async move { g.handle_link(theirs).await });
        let mut bytes = vec![0x00, 0xA5, 0x17, 0x4C];
        bytes.extend(hello(1));
        bytes.extend(link::frame(Msg::Ping(lp::Ping { id: 9 })).unwrap());
        ours.write_all(&bytes).await.unwrap();
        let mut dec = Decoder::new();
        match next(&mut ours, &mut dec).await {
            Msg::Welcome(w) => {
                assert_eq!(w.version, 1);
                assert!(w.unix_time_ms > 1_600_000_000_000);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            next(&mut ours, &mut dec).await,
            Msg::Pong(lp::Pong { id: 9 })
        );
        // A packet before any room: dropped, the link goes on.
        let stray = link::frame(Msg::Packet(lp::Packet {
            kind: 0,
            data: vec![1, 2, 3],
        }))
        .unwrap();
        ours.write_all(&stray).await.unwrap();
        ours.write_all(&link::frame(Msg::Ping(lp::Ping { id: 10 })).unwrap())
            .await
            .unwrap();
        assert_eq!(
            next(&mut ours, &mut dec).await,
            Msg::Pong(lp::Pong { id: 10 })
        );
        assert_eq!(gateway.session_count(), 0);

        let (mut other, theirs) = tokio::io::duplex(4096);
        let g = gateway.clone();
        let served = tokio::spawn(async move { g.handle_link(theirs).await });
        other.write_all(&hello(2)).await.unwrap();
        let mut dec = Decoder::new();
        assert!(
            matches!(next(&mut other, &mut dec).await, Msg::Refused(r) if r.reason.contains("version 2"))
        );
        tokio::time::timeout(Duration::from_secs(5), served)
            .await
            .expect("the link ends")
            .unwrap();
    }

    #[tokio::test]
    async fn connect_needs_a_hello_first() {
        let gateway = Gateway::new(GatewayOptions::default());
        let (mut ours, theirs) = tokio::io::duplex(4096);
        let g = gateway.clone();
        let served = tokio::spawn(async move { g.handle_link(theirs).await });
        let connect = link::frame(Msg::Connect(lp::Connect {
            url: "ws://127.0.0.1:9".into(),
            token: "t".into(),
        }))
        .unwrap();
        ours.write_all(&connect).await.unwrap();
        let mut dec = Decoder::new();
        assert!(matches!(next(&mut ours, &mut dec).await, Msg::Refused(_)));
        tokio::time::timeout(Duration::from_secs(5), served)
            .await
            .expect("the link ends")
            .unwrap();
        assert_eq!(gateway.session_count(), 0);
    }
}
