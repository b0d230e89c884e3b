//! One WebRTC peer connection: a str0m `Rtc` driven by a tokio task that owns its
//! sockets (a UDP one per host address), its ICE-TCP connections (`ice_tcp`), its
//! TURN allocations (`turn`) and its timer.
//!
//! str0m is sans-IO, so this task is the whole run loop: it applies one mutation
//! (a command, a datagram or a timeout), drains `poll_output` to the next timeout,
//! and repeats. Everything else talks to it through `PeerConnection`, a cheap
//! handle that sends commands and awaits their answers.
//!
//! Candidates follow the session's `IceConfig`: host ones on every usable interface
//! address (offered unless the policy is no-host), a server-reflexive one per STUN
//! answer, and a relayed one per TURN allocation; relay-only means the last alone.
//! Those found after the start reach the server as `PeerEvent::LocalCandidate`.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::{ChannelConfig, ChannelId, Reliability};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::{Candidate, CandidateKind, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::audio::{AudioPacket, EncodedAudio};
use crate::data::{DataKind, MAX_MESSAGE_SIZE};
use crate::error::{Error, Result};
use crate::ice::{self, IceConfig, IcePolicy, ServerUrl};
use crate::ice_tcp::{self, TcpLinks};
use crate::outbox::Outbox;
use crate::sdp;
use crate::stats::{
    self, CandidateStats, CandidateType, ChannelStats, PathStats, PeerStats, Traffic,
};
use crate::turn::{Relay, RelayEvent, TurnServer};

/// A channel takes no more packets while this much is buffered in SCTP: a burst
/// waits in the outbox (where callers feel it), not in SCTP (where it adds latency).
const SEND_HIGH_WATER: usize = 192 * 1024;
/// SCTP tells us when a channel's buffer drains below this.
const SEND_LOW_WATER: usize = 64 * 1024;

/// Which of the two peer connections of a session this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerRole {
    Publisher,
    Subscriber,
}

#[derive(Debug)]
pub enum PeerEvent {
    /// ICE and DTLS are up.
    Connected,
    /// ICE connectivity changed; `Disconnected` may recover on its own.
    IceState(IceConnectionState),
    /// Nothing came over the chosen path for `PATH_SILENT` although ICE checks it
    /// every 1.5 s: the path is gone. str0m holds on to it for 15 s more (as long as
    /// the peer's last check is recent by its measure), past the server's own timeout.
    PathSilent,
    ChannelOpen(DataKind),
    /// A candidate found after the start (server-reflexive, relayed, or a new
    /// interface address), as its SDP attribute value; the server must hear of it.
    LocalCandidate(String),
    /// The remote side sends (or stopped sending) the audio of media `mid`; `track_id`
    /// is the track's sid as the server names it in the description.
    AudioTrack {
        mid: String,
        track_id: String,
        sending: bool,
    },
    Data {
        kind: DataKind,
        bytes: Vec<u8>,
    },
    /// The peer connection is gone for good.
    Closed(String),
}

enum Command {
    /// `None` when nothing changed since the last offer.
    CreateOffer(oneshot::Sender<Result<Option<String>>>),
    /// An offer with fresh ICE credentials (resume after a loss).
    IceRestartOffer(oneshot::Sender<Result<String>>),
    AcceptAnswer(String, oneshot::Sender<Result<()>>),
    AcceptOffer(String, oneshot::Sender<Result<String>>),
    AddRemoteCandidate(Candidate),
    /// Answer once everything queued has been sent and acknowledged.
    Flush(oneshot::Sender<Result<()>>),
    /// A snapshot of what the connection measured.
    Stats(oneshot::Sender<PeerStats>),
    /// Send a track's audio (`cid` is its id in the description) from the next offer on.
    AddAudio(String),
    /// Stop sending track `cid` (the next offer says so).
    RemoveAudio(String),
    /// Where the received audio of media `mid` goes (`None`: nowhere).
    RouteAudio(String, Option<mpsc::Sender<AudioPacket>>),
}

/// How much encoded audio may wait for the peer task: 50 packets of 20 ms.
const MEDIA_QUEUE: usize = 50;

/// Handle to a running peer connection task. The task ends when every handle is gone.
#[derive(Clone)]
pub struct PeerConnection {
    role: PeerRole,
    tx: mpsc::Sender<Command>,
    media: mpsc::Sender<EncodedAudio>,
    signalled: Arc<parking_lot::Mutex<Signalled>>,
}

/// The candidates the server is told of, and where trickles go once an offer or
/// answer named the transport's m-line. Only the engine's task touches it, so a
/// candidate is never trickled twice, nor lost between the two.
#[derive(Default)]
struct Signalled {
    candidates: Vec<String>,
    target: Option<(String, u32)>,
}

/// ICE checks: the longest wait between retransmissions (also how often a valid
/// pair is checked), and how many unanswered ones fail a pair.
const STUN_MAX_RTO: Duration = Duration::from_millis(1500);
const STUN_RETRANSMITS: usize = 7;

/// How long the chosen path may stay silent (checks go both ways every 1.5 s or so)
/// before it is reported lost.
pub const PATH_SILENT: Duration = Duration::from_secs(8);

/// How often new interface addresses are looked for under GATHER_CONTINUALLY.
const REGATHER_EVERY: Duration = Duration::from_secs(5);
/// STUN binding requests to each server: when they leave, from the start.
const STUN_TRIES: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_millis(500),
    Duration::from_millis(1500),
];

/// A datagram that arrived on one of the extra host sockets: (our address, from, bytes).
type HostArrival = (SocketAddr, SocketAddr, Vec<u8>);

impl std::fmt::Debug for PeerConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerConnection")
            .field("role", &self.role)
            .finish()
    }
}

/// The local address the OS would use to reach `remote`: that is our host candidate.
/// No packet is sent; connecting a UDP socket only picks a route.
pub fn route_ip(remote: IpAddr) -> IpAddr {
    let any: SocketAddr = if remote.is_ipv6() {
        "[::]:0".parse().expect("literal")
    } else {
        "0.0.0.0:0".parse().expect("literal")
    };
    std::net::UdpSocket::bind(any)
        .and_then(|s| s.connect(SocketAddr::new(remote, 9)).map(|_| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .unwrap_or(if remote.is_loopback() {
            remote
        } else {
            IpAddr::from([0, 0, 0, 0])
        })
}

/// Socket buffers for bursts of large data messages: with the OS default (~200 KiB)
/// a burst overflows the receive queue, and SCTP then waits for its retransmission
/// timer. The OS caps the request at its maximum (net.core.rmem_max / wmem_max).
const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // Best effort: a smaller buffer still works, only with more loss under bursts.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

impl PeerConnection {
    /// Starts the peer's task with its host sockets (on `local_ip`, the address that
    /// routes to the server, and the machine's other addresses), its STUN queries
    /// and TURN allocations as `ice` says; its events go to `events`, tagged with
    /// `role`. A publisher sends what `outbox` queues.
    pub async fn new(
        role: PeerRole,
        local_ip: IpAddr,
        ice: &IceConfig,
        events: mpsc::Sender<(PeerRole, PeerEvent)>,
        outbox: Option<Arc<Outbox>>,
    ) -> Result<Self> {
        let relay_only = ice.policy == IcePolicy::Relay;
        let mut config = Rtc::builder();
        // A path that stops answering is given up after about 8 s, not str0m's 19:
        // then ICE moves to another valid pair (a new interface, another candidate)
        // before the server's own timeout ends the session. Valid pairs are checked
        // every 1.5 s meanwhile.
        config.set_max_stun_rto(STUN_MAX_RTO);
        config.set_max_stun_retransmits(STUN_RETRANSMITS);
        let mut rtc = config
            .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
            .set_stats_interval(None)
            .set_sctp_max_message_size(MAX_MESSAGE_SIZE as u32)
            // Small enough that a burst waits in the caller (backpressure), not in SCTP
            // (latency); large enough to keep the association busy.
            .set_sctp_max_buffered_amount(SEND_HIGH_WATER + SEND_LOW_WATER)
            // Our own jitter buffer (audio/jitter.rs) waits for late packets, 40 ms at
            // most; str0m's would hold up to 15 more behind every gap (measured: 0.2 to
            // 0.6 s silences under 30% loss).
            .set_reordering_size_audio(0)
            .build(Instant::now());
        let mut signalled = Signalled::default();
        let urls = ice.urls();
        let (host_tx, host_rx) = mpsc::channel(MEDIA_QUEUE * 4);
        let mut hosts = Hosts {
            primary: None,
            extra: HashMap::new(),
            arrivals: host_tx,
            offered: ice.policy == IcePolicy::All,
            known: HashMap::new(),
        };
        // A relay-only peer has no socket of its own: every packet goes through TURN.
        let tcp_local = TcpLinks::local_addr(local_ip);
        if !relay_only {
            let socket = bind_udp(SocketAddr::new(local_ip, 0))
                .map_err(|e| Error::Rtc(format!("cannot bind a UDP socket on {local_ip}: {e}")))?;
            let local = socket
                .local_addr()
                .map_err(|e| Error::Rtc(format!("socket has no address: {e}")))?;
            hosts.primary = Some((local, Arc::new(socket)));
            if let Some(c) = add_host(&mut rtc, local)? {
                if hosts.offered {
                    signalled.candidates.push(c.to_sdp_string());
                }
                hosts.known.insert(local, c);
            }
            for ip in ice::host_addresses(local_ip, &ice::interface_addresses())
                .into_iter()
                .skip(1)
            {
                if let Some(c) = hosts.add(&mut rtc, ip) {
                    signalled.candidates.push(c);
                }
            }
            // An active TCP candidate too, for paths where UDP does not get through
            // (str0m ranks TCP pairs below UDP ones, so it is used only when UDP fails).
            let tcp = Candidate::builder()
                .tcp()
                .host(tcp_local)
                .tcptype(TcpType::Active)
                .build()
                .map_err(|e| Error::Rtc(format!("bad TCP candidate {tcp_local}: {e}")))?;
            if let Some(c) = rtc.add_local_candidate(tcp) {
                if hosts.offered {
                    signalled.candidates.push(c.to_sdp_string());
                }
                hosts.known.insert(tcp_local, c.clone());
            }
        }
        let (stun_tx, stun_rx) = mpsc::channel(64);
        if let Some((_, socket)) = &hosts.primary {
            let targets: Vec<(String, u16)> = urls
                .iter()
                .filter_map(|u| u.stun_target())
                .map(|(h, p)| (h.to_owned(), p))
                .collect();
            if !targets.is_empty() {
                tokio::spawn(ask_stun(targets, Arc::downgrade(socket), local_ip, stun_tx));
            }
        }
        let (relay_tx, relay_rx) = mpsc::channel(QUEUE_RELAYED);
        let relays: Vec<Relay> = urls
            .iter()
            .filter_map(|u| match u {
                ServerUrl::Turn {
                    host,
                    port,
                    transport,
                    username,
                    credential,
                } => Some(TurnServer {
                    host: host.clone(),
                    port: *port,
                    transport: *transport,
                    username: username.clone(),
                    credential: credential.clone(),
                }),
                ServerUrl::Stun { .. } => None,
            })
            .enumerate()
            .map(|(id, server)| {
                Relay::start(
                    id,
                    server,
                    local_ip,
                    crate::signal::tls_config(),
                    relay_tx.clone(),
                )
            })
            .collect();
        if relay_only && relays.is_empty() {
            return Err(Error::Rtc(
                "relay-only ICE needs a TURN server, and none was given".into(),
            ));
        }
        let signalled = Arc::new(parking_lot::Mutex::new(signalled));
        let (tcp_links, tcp_arrivals) = TcpLinks::new();
        let (tx, rx) = mpsc::channel(256);
        let (media, media_rx) = mpsc::channel(MEDIA_QUEUE);
        let driver = Driver {
            role,
            rtc,
            hosts,
            local_ip,
            regather: (ice.gather_continually && !relay_only).then_some(REGATHER_EVERY),
            relays,
            relayed: HashMap::new(),
            remote_ips: HashSet::new(),
            stun_asked: Vec::new(),
            reflexive: HashSet::new(),
            path: None,
            measured: PeerStats {
                // We offer on the publisher and so start its checks; the server
                // offers the subscriber.
                controlling: role == PeerRole::Publisher,
                ..Default::default()
            },
            path_traffic: Traffic::default(),
            path_last: (0.0, 0.0),
            path_heard: Instant::now(),
            silence_reported: false,
            channel_stats: HashMap::new(),
            local_candidates: HashMap::new(),
            remote_candidates: HashMap::new(),
            tcp: tcp_links,
            tcp_local,
            events,
            pending_offer: None,
            channels: HashMap::new(),
            open: HashMap::new(),
            ours: Vec::new(),
            outbox,
            remote_described: false,
            flushing: Vec::new(),
            early_candidates: Vec::new(),
            sending: HashMap::new(),
            to_add: Vec::new(),
            to_stop: Vec::new(),
            receiving: HashMap::new(),
        };
        tokio::spawn(driver.run(
            rx,
            media_rx,
            Arrivals {
                tcp: tcp_arrivals,
                hosts: host_rx,
                relays: relay_rx,
                stun: stun_rx,
            },
        ));
        Ok(Self {
            role,
            tx,
            media,
            signalled,
        })
    }

    /// Every candidate the server should know of, as the JSON `candidate_init` of
    /// a trickle message for the m-line `sdp_mid` at `index` (the one whose
    /// transport the bundle shares); later ones go to the same m-line.
    pub fn local_candidate_inits(&self, sdp_mid: &str, index: u32) -> Vec<String> {
        let mut s = self.signalled.lock();
        s.target = Some((sdp_mid.to_owned(), index));
        s.candidates
            .iter()
            .map(|c| candidate_init(c, sdp_mid, index))
            .collect()
    }

    /// Records a candidate found late; its `candidate_init` when the server can be
    /// told now (else it goes with the next `local_candidate_inits`).
    pub fn gathered(&self, candidate: String) -> Option<String> {
        let mut s = self.signalled.lock();
        let init = s
            .target
            .as_ref()
            .map(|(mid, index)| candidate_init(&candidate, mid, *index));
        s.candidates.push(candidate);
        init
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T>>) -> Command) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| Error::Rtc("peer connection closed".into()))?;
        rx.await
            .map_err(|_| Error::Rtc("peer connection closed".into()))?
    }

    /// Offer with fresh ICE credentials, to resume after a loss (publisher only).
    pub async fn ice_restart_offer(&self) -> Result<String> {
        self.call(Command::IceRestartOffer).await
    }

    /// Resolves once the outbox is empty and SCTP holds nothing unacknowledged on
    /// our channels (publisher only): a leave sent after it loses no data.
    pub async fn stats(&self) -> Result<PeerStats> {
        let (reply, rx) = oneshot::channel();
        self.tell(Command::Stats(reply)).await?;
        rx.await
            .map_err(|_| Error::Rtc("peer connection closed".into()))
    }

    pub async fn flush(&self) -> Result<()> {
        self.call(Command::Flush).await
    }

    /// Offer with our `_reliable` and `_lossy` data channels and our tracks
    /// (publisher only); `None` when nothing changed since the last one.
    pub async fn create_offer(&self) -> Result<Option<String>> {
        self.call(Command::CreateOffer).await
    }

    pub async fn accept_answer(&self, sdp: String) -> Result<()> {
        self.call(|r| Command::AcceptAnswer(sdp, r)).await
    }

    pub async fn accept_offer(&self, sdp: String) -> Result<String> {
        self.call(|r| Command::AcceptOffer(sdp, r)).await
    }

    /// Where encoded audio of our tracks goes to be sent (publisher only). Full means
    /// the connection is not keeping up: the sender drops the packet.
    pub fn media_input(&self) -> mpsc::Sender<EncodedAudio> {
        self.media.clone()
    }

    async fn tell(&self, cmd: Command) -> Result<()> {
        self.tx
            .send(cmd)
            .await
            .map_err(|_| Error::Rtc("peer connection closed".into()))
    }

    /// Sends track `cid` from the next offer on (publisher only).
    pub async fn add_audio(&self, cid: &str) -> Result<()> {
        self.tell(Command::AddAudio(cid.to_owned())).await
    }

    /// Stops sending track `cid`; the next offer tells the server.
    pub async fn remove_audio(&self, cid: &str) -> Result<()> {
        self.tell(Command::RemoveAudio(cid.to_owned())).await
    }

    /// Routes the audio received on media `mid` (subscriber only).
    pub async fn route_audio(
        &self,
        mid: &str,
        to: Option<mpsc::Sender<AudioPacket>>,
    ) -> Result<()> {
        self.tell(Command::RouteAudio(mid.to_owned(), to)).await
    }

    /// Adds a remote candidate from a trickle `candidate_init` JSON.
    /// Candidates we cannot use (TCP ones we could not connect to, end-of-candidates)
    /// are skipped.
    pub async fn add_remote_candidate(&self, candidate_init: &str) -> Result<()> {
        let Some(c) = parse_candidate_init(candidate_init)? else {
            return Ok(());
        };
        self.tx
            .send(Command::AddRemoteCandidate(c))
            .await
            .map_err(|_| Error::Rtc("peer connection closed".into()))
    }
}

/// The next datagram on the primary socket (never, for a relay-only peer), with
/// the address it came to.
async fn recv_primary(
    primary: &Option<(SocketAddr, Arc<UdpSocket>)>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr, SocketAddr)> {
    match primary {
        Some((local, socket)) => {
            let (n, from) = socket.recv_from(buf).await?;
            Ok((n, from, *local))
        }
        None => std::future::pending().await,
    }
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// A candidate of the path for the stats: as signalled when we know it, else
/// peer-reflexive (learned from the checks).
fn describe(known: Option<&Candidate>, proto: Protocol, addr: SocketAddr) -> CandidateStats {
    let protocol = if proto == Protocol::Udp { "udp" } else { "tcp" };
    match known {
        Some(c) => CandidateStats {
            addr,
            protocol,
            kind: match c.kind() {
                CandidateKind::Host => CandidateType::Host,
                CandidateKind::ServerReflexive => CandidateType::ServerReflexive,
                CandidateKind::PeerReflexive => CandidateType::PeerReflexive,
                CandidateKind::Relayed => CandidateType::Relay,
            },
            priority: c.prio(),
            foundation: stats::foundation(&c.to_sdp_string()),
            relay: None,
            tcp_active: c.tcptype().map(|t| t == TcpType::Active),
        },
        None => CandidateStats {
            addr,
            protocol,
            kind: CandidateType::PeerReflexive,
            priority: 0,
            foundation: String::new(),
            relay: None,
            tcp_active: None,
        },
    }
}

/// The SCTP stream number of a channel (str0m shows it only through Debug).
fn channel_number(id: ChannelId) -> i32 {
    let text = format!("{id:?}");
    let digits: String = text.chars().filter(|c| c.is_ascii_digit()).collect();
    digits.parse().unwrap_or(-1)
}

fn unix_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// Relayed packets waiting for the peer's task.
const QUEUE_RELAYED: usize = 1024;

fn candidate_init(candidate: &str, sdp_mid: &str, index: u32) -> String {
    serde_json::json!({
        "candidate": candidate,
        "sdpMid": sdp_mid,
        "sdpMLineIndex": index,
    })
    .to_string()
}

/// Adds a UDP host candidate at `addr`; `None` if str0m already had it.
fn add_host(rtc: &mut Rtc, addr: SocketAddr) -> Result<Option<Candidate>> {
    let candidate = Candidate::host(addr, "udp")
        .map_err(|e| Error::Rtc(format!("bad host candidate {addr}: {e}")))?;
    Ok(rtc.add_local_candidate(candidate).cloned())
}

/// The peer's UDP host sockets: the primary one (on the address that routes to the
/// server) is read by the run loop itself; the others by a reader task each.
struct Hosts {
    primary: Option<(SocketAddr, Arc<UdpSocket>)>,
    extra: HashMap<SocketAddr, Arc<UdpSocket>>,
    arrivals: mpsc::Sender<HostArrival>,
    /// Whether host candidates are offered to the server (not under no-host).
    offered: bool,
    /// Every host candidate made (ICE-TCP's too), by address.
    known: HashMap<SocketAddr, Candidate>,
}

impl Hosts {
    /// A socket and host candidate on `ip`, unless one exists; the candidate's SDP
    /// form when the server should be told of it.
    fn add(&mut self, rtc: &mut Rtc, ip: IpAddr) -> Option<String> {
        let taken = self.primary.as_ref().is_some_and(|(a, _)| a.ip() == ip)
            || self.extra.keys().any(|a| a.ip() == ip);
        if taken {
            return None;
        }
        let socket = match bind_udp(SocketAddr::new(ip, 0)) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                log::debug!("no host candidate on {ip}: {e}");
                return None;
            }
        };
        let local = socket.local_addr().ok()?;
        let candidate = match add_host(rtc, local) {
            Ok(c) => c?,
            Err(e) => {
                log::debug!("{e}");
                return None;
            }
        };
        tokio::spawn(read_host(socket.clone(), local, self.arrivals.clone()));
        self.extra.insert(local, socket);
        let sdp = candidate.to_sdp_string();
        self.known.insert(local, candidate);
        self.offered.then_some(sdp)
    }

    fn socket_for(&self, source: SocketAddr) -> Option<&UdpSocket> {
        match &self.primary {
            Some((local, s)) if *local == source => Some(s),
            _ => self
                .extra
                .get(&source)
                .or(self.primary.as_ref().map(|(_, s)| s))
                .map(|s| &**s),
        }
    }
}

/// Reads one extra host socket until the peer's task is gone.
async fn read_host(socket: Arc<UdpSocket>, local: SocketAddr, to: mpsc::Sender<HostArrival>) {
    let mut buf = vec![0u8; 2048];
    loop {
        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, from)) => {
                    if let Err(mpsc::error::TrySendError::Closed(_)) =
                        to.try_send((local, from, buf[..n].to_vec()))
                    {
                        return;
                    }
                }
                Err(e) => log::debug!("recv error on {local}: {e}"),
            },
            _ = to.closed() => return,
        }
    }
}

/// Sends STUN binding requests from the primary socket to each server, a few times;
/// the run loop, told each transaction first, reads the answers.
async fn ask_stun(
    targets: Vec<(String, u16)>,
    socket: std::sync::Weak<UdpSocket>,
    local_ip: IpAddr,
    asked: mpsc::Sender<(SocketAddr, ice::StunTransaction)>,
) {
    // A lookup may be slow: the peer may be gone by then, and the socket with it.
    let resolved = async {
        let mut servers = Vec::new();
        for (host, port) in targets {
            let found = crate::resolve::lookup(&host, port).await;
            if let Some(a) = found.iter().find(|a| a.is_ipv6() == local_ip.is_ipv6()) {
                servers.push(*a);
            }
        }
        servers
    };
    let servers = tokio::select! {
        s = resolved => s,
        _ = asked.closed() => return,
    };
    let Some(socket) = socket.upgrade() else {
        return;
    };
    let start = tokio::time::Instant::now();
    for at in STUN_TRIES {
        tokio::select! {
            _ = tokio::time::sleep_until(start + at) => {}
            _ = asked.closed() => return,
        }
        for server in &servers {
            let (id, request) = ice::binding_request();
            if asked.send((*server, id)).await.is_err() {
                return;
            }
            if let Err(e) = socket.send_to(&request, server).await {
                log::debug!("STUN request to {server} not sent: {e}");
            }
        }
    }
}

/// Everything besides commands and media that reaches the run loop.
struct Arrivals {
    tcp: mpsc::Receiver<ice_tcp::Arrival>,
    hosts: mpsc::Receiver<HostArrival>,
    relays: mpsc::Receiver<RelayEvent>,
    stun: mpsc::Receiver<(SocketAddr, ice::StunTransaction)>,
}

/// Parses a trickle `candidate_init` into a UDP candidate or a passive TCP one (we
/// connect to it: ICE-TCP); `None` for candidates we skip.
pub fn parse_candidate_init(init: &str) -> Result<Option<Candidate>> {
    let v: serde_json::Value =
        serde_json::from_str(init).map_err(|e| Error::Rtc(format!("bad candidate JSON: {e}")))?;
    let s = v
        .get("candidate")
        .and_then(|c| c.as_str())
        .unwrap_or("")
        .trim();
    if s.is_empty() {
        return Ok(None);
    }
    let line = s.strip_prefix("a=").unwrap_or(s);
    let c = Candidate::from_sdp_string(line)
        .map_err(|e| Error::Rtc(format!("bad candidate {line:?}: {e}")))?;
    let usable = match c.proto() {
        Protocol::Udp => true,
        Protocol::Tcp => c.tcptype() == Some(TcpType::Passive),
        _ => false,
    };
    Ok(usable.then_some(c))
}

struct Driver {
    role: PeerRole,
    rtc: Rtc,
    hosts: Hosts,
    /// The address that routes to the server.
    local_ip: IpAddr,
    /// How often to look for new interface addresses (GATHER_CONTINUALLY).
    regather: Option<Duration>,
    /// TURN allocations, and which one each relayed address is.
    relays: Vec<Relay>,
    relayed: HashMap<SocketAddr, usize>,
    /// Addresses of remote candidates: TURN permissions are asked for each.
    remote_ips: HashSet<IpAddr>,
    /// STUN requests sent, and the server-reflexive addresses they found.
    stun_asked: Vec<(SocketAddr, ice::StunTransaction)>,
    reflexive: HashSet<SocketAddr>,
    /// The path the last packet other than STUN took: (protocol, from, to).
    path: Option<(Protocol, SocketAddr, SocketAddr)>,
    /// Counters for `stats`, the path's since it was chosen.
    measured: PeerStats,
    path_traffic: Traffic,
    path_last: (f64, f64),
    /// When a packet last came over the path, and whether its silence was reported.
    path_heard: Instant,
    silence_reported: bool,
    channel_stats: HashMap<ChannelId, ChannelStats>,
    /// Our candidates and the server's, by address, to describe the path.
    local_candidates: HashMap<SocketAddr, Candidate>,
    remote_candidates: HashMap<SocketAddr, Candidate>,
    /// ICE-TCP connections, and our active candidate's address on them.
    tcp: TcpLinks,
    tcp_local: SocketAddr,
    events: mpsc::Sender<(PeerRole, PeerEvent)>,
    pending_offer: Option<SdpPendingOffer>,
    channels: HashMap<ChannelId, DataKind>,
    open: HashMap<DataKind, ChannelId>,
    /// The channels we opened (the server may open its own beside them).
    ours: Vec<ChannelId>,
    /// What a publisher sends; the queue outlives this connection.
    outbox: Option<Arc<Outbox>>,
    remote_described: bool,
    early_candidates: Vec<Candidate>,
    /// Callers waiting for everything sent to be acknowledged.
    flushing: Vec<oneshot::Sender<Result<()>>>,
    /// Our tracks by cid, with their media once an offer carried them.
    sending: HashMap<String, Option<Mid>>,
    /// Tracks the next offer adds, and media it marks inactive.
    to_add: Vec<String>,
    to_stop: Vec<Mid>,
    /// Where each received audio media goes.
    receiving: HashMap<Mid, mpsc::Sender<AudioPacket>>,
}

impl Driver {
    /// Answers the flush waiters once nothing is queued or unacknowledged.
    fn check_flushed(&mut self) {
        if self.flushing.is_empty() {
            return;
        }
        let queued = self.outbox.as_ref().map_or(0, |o| o.lock().queued());
        let mut unacked = 0;
        for id in self.open.values() {
            if let Some(mut ch) = self.rtc.channel(*id) {
                unacked += ch.buffered_amount();
            }
        }
        if queued == 0 && unacked == 0 {
            for w in self.flushing.drain(..) {
                let _ = w.send(Ok(()));
            }
        }
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Command>,
        mut media: mpsc::Receiver<EncodedAudio>,
        mut arrivals: Arrivals,
    ) {
        let mut buf = vec![0u8; 2048];
        let primary = self.hosts.primary.clone();
        let mut regather = self
            .regather
            .map(|every| tokio::time::interval_at(tokio::time::Instant::now() + every, every));
        loop {
            let timeout = match self.drain().await {
                Some(t) => t,
                None => break,
            };
            let timeout = match self.path {
                Some(_) if !self.silence_reported => {
                    let silent_at = self.path_heard + PATH_SILENT;
                    if Instant::now() >= silent_at {
                        self.silence_reported = true;
                        log::info!(
                            "{:?}: nothing heard on the path for {PATH_SILENT:?}",
                            self.role
                        );
                        self.emit(PeerEvent::PathSilent).await;
                        continue;
                    }
                    timeout.min(silent_at)
                }
                _ => timeout,
            };
            // One early remote candidate per round keeps "mutate, then drain".
            if self.remote_described {
                if let Some(c) = self.early_candidates.pop() {
                    self.rtc.add_remote_candidate(c);
                    continue;
                }
            }
            self.flush_outbox().await;
            self.check_flushed();
            if !self.rtc.is_alive() {
                self.emit(PeerEvent::Closed("peer connection closed".into()))
                    .await;
                break;
            }
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(timeout));
            let outbox = self.outbox.clone();
            let queued = async {
                match &outbox {
                    Some(o) => o.queued().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = queued => {}
                cmd = rx.recv() => match cmd {
                    Some(cmd) => {
                        self.command(cmd);
                        // str0m's ICE agent starts checking only once it has seen the
                        // time; a remote candidate or description may be what it waited
                        // for. Over UDP the server's own checks wake it, but nothing
                        // reaches an active TCP candidate before we connect.
                        if let Err(e) = self.rtc.handle_input(Input::Timeout(Instant::now())) {
                            self.emit(PeerEvent::Closed(format!("timeout handling failed: {e}"))).await;
                            break;
                        }
                    }
                    None => break,
                },
                Some(audio) = media.recv() => self.write_audio(audio),
                Some((source, packet)) = arrivals.tcp.recv() => {
                    self.receive(Protocol::Tcp, source, self.tcp_local, &packet);
                }
                Some((local, source, packet)) = arrivals.hosts.recv() => {
                    self.receive(Protocol::Udp, source, local, &packet);
                }
                Some(ev) = arrivals.relays.recv() => self.relay_event(ev).await,
                Some(asked) = arrivals.stun.recv() => self.stun_asked.push(asked),
                r = recv_primary(&primary, &mut buf) => match r {
                    Ok((n, source, local)) => {
                        if !self.stun_answer(source, &buf[..n]).await {
                            self.receive(Protocol::Udp, source, local, &buf[..n]);
                        }
                    }
                    Err(e) => log::debug!("{:?}: recv error: {e}", self.role),
                },
                _ = tick(&mut regather) => self.gather_interfaces().await,
                _ = sleep => {
                    if let Err(e) = self.rtc.handle_input(Input::Timeout(Instant::now())) {
                        self.emit(PeerEvent::Closed(format!("timeout handling failed: {e}"))).await;
                        break;
                    }
                }
            }
        }
        self.rtc.disconnect();
    }

    async fn emit(&self, ev: PeerEvent) {
        let _ = self.events.send((self.role, ev)).await;
    }

    /// Logs the path DTLS, SCTP and media take whenever ICE picks another one: which
    /// candidates a session really uses (a relay, ICE-TCP) is worth knowing.
    fn note_path(&mut self, proto: Protocol, from: SocketAddr, to: SocketAddr, packet: &[u8]) {
        // STUN (first byte 0 to 3) checks every pair; the rest goes on the chosen one.
        if packet.first().is_none_or(|b| *b < 4) || self.path == Some((proto, from, to)) {
            return;
        }
        self.path = Some((proto, from, to));
        self.measured.path_changes += 1;
        self.path_traffic = Traffic::default();
        self.path_last = (0.0, 0.0);
        self.path_heard = Instant::now();
        self.silence_reported = false;
        let kind = match self.relayed.get(&from).and_then(|i| self.relays.get(*i)) {
            Some(relay) => format!("relay by {}", relay.server()),
            None => "host".into(),
        };
        log::info!(
            "{:?}: path now {proto:?} {from} ({kind}) -> {to}",
            self.role
        );
    }

    /// Counts one packet leaving on (proto, from, to).
    fn count_sent(&mut self, proto: Protocol, from: SocketAddr, to: SocketAddr, bytes: usize) {
        self.measured.transport.sent(bytes);
        if self.path == Some((proto, from, to)) {
            self.path_traffic.sent(bytes);
            self.path_last.0 = unix_ms();
        }
    }

    /// Hands one packet that arrived for our candidate at `local` to str0m.
    fn receive(&mut self, proto: Protocol, source: SocketAddr, local: SocketAddr, packet: &[u8]) {
        self.measured.transport.received(packet.len());
        if self.path == Some((proto, local, source)) {
            self.path_traffic.received(packet.len());
            self.path_last.1 = unix_ms();
            self.path_heard = Instant::now();
            self.silence_reported = false;
        }
        if let Ok(recv) = Receive::new(proto, source, local, packet) {
            if let Err(e) = self.rtc.handle_input(Input::Receive(Instant::now(), recv)) {
                log::debug!("{:?}: dropped a {proto:?} packet: {e}", self.role);
            }
        }
    }

    /// What the connection measured, with its chosen path described.
    fn snapshot(&self) -> PeerStats {
        let mut out = self.measured.clone();
        let mut channels: Vec<ChannelStats> = self.channel_stats.values().cloned().collect();
        channels.sort_by_key(|c| c.id);
        out.channels = channels;
        out.path = self.path.map(|(proto, from, to)| PathStats {
            local: self.describe_local(proto, from),
            remote: describe(self.remote_candidates.get(&to), proto, to),
            traffic: self.path_traffic,
            last_sent_ms: self.path_last.0,
            last_received_ms: self.path_last.1,
        });
        out
    }

    fn describe_local(&self, proto: Protocol, addr: SocketAddr) -> CandidateStats {
        let known = self
            .local_candidates
            .get(&addr)
            .or_else(|| self.hosts.known.get(&addr));
        let mut c = describe(known, proto, addr);
        if let Some(relay) = self.relayed.get(&addr).and_then(|i| self.relays.get(*i)) {
            c.kind = CandidateType::Relay;
            c.relay = Some((relay.transport(), relay.server().to_owned()));
        }
        c
    }

    /// Takes the answer to one of our STUN requests: a server-reflexive candidate.
    /// `false` when the packet is something else (for str0m).
    async fn stun_answer(&mut self, source: SocketAddr, packet: &[u8]) -> bool {
        if self.stun_asked.is_empty() {
            return false;
        }
        let Some(mapped) = self
            .stun_asked
            .iter()
            .filter(|(server, _)| *server == source)
            .find_map(|(_, id)| ice::mapped_address(packet, *id))
        else {
            return false;
        };
        let Some((base, _)) = self.hosts.primary.clone() else {
            return true;
        };
        // Behind no NAT the server sees our host address: nothing new to offer.
        if mapped == base || !self.reflexive.insert(mapped) {
            return true;
        }
        match Candidate::server_reflexive(mapped, base, "udp") {
            Ok(c) => {
                log::debug!("{:?}: server-reflexive address {mapped}", self.role);
                if let Some(c) = self.rtc.add_local_candidate(c) {
                    let sdp = c.to_sdp_string();
                    self.emit(PeerEvent::LocalCandidate(sdp)).await;
                }
            }
            Err(e) => log::debug!("{:?}: {e}", self.role),
        }
        true
    }

    async fn relay_event(&mut self, ev: RelayEvent) {
        match ev {
            RelayEvent::Allocated { id, relayed, local } => {
                let Some(relay) = self.relays.get(id) else {
                    return;
                };
                for ip in &self.remote_ips {
                    relay.permit(*ip);
                }
                self.relayed.insert(relayed, id);
                match Candidate::relayed(relayed, local, "udp") {
                    Ok(c) => {
                        if let Some(c) = self.rtc.add_local_candidate(c) {
                            self.local_candidates.insert(relayed, c.clone());
                            let sdp = c.to_sdp_string();
                            self.emit(PeerEvent::LocalCandidate(sdp)).await;
                        }
                    }
                    Err(e) => log::debug!("{:?}: {e}", self.role),
                }
            }
            RelayEvent::Data {
                relayed,
                from,
                data,
            } => self.receive(Protocol::Udp, from, relayed, &data),
            RelayEvent::Failed { id, reason } => {
                log::warn!("{:?}: TURN server {id} unusable: {reason}", self.role);
                self.relayed.retain(|_, i| *i != id);
            }
        }
    }

    /// Host candidates on interface addresses that appeared since the last look.
    async fn gather_interfaces(&mut self) {
        let found = ice::host_addresses(self.local_ip, &ice::interface_addresses());
        for ip in found {
            if let Some(sdp) = self.hosts.add(&mut self.rtc, ip) {
                log::debug!("{:?}: new host candidate on {ip}", self.role);
                self.emit(PeerEvent::LocalCandidate(sdp)).await;
            }
        }
    }

    /// Drains outputs to the next timeout; `None` when the `Rtc` failed.
    async fn drain(&mut self) -> Option<Instant> {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => return Some(t),
                Ok(Output::Transmit(t)) if t.proto == Protocol::Tcp => {
                    self.note_path(t.proto, t.source, t.destination, &t.contents);
                    self.count_sent(t.proto, t.source, t.destination, t.contents.len());
                    self.tcp.send(t.destination, &t.contents);
                }
                Ok(Output::Transmit(t)) => {
                    self.note_path(t.proto, t.source, t.destination, &t.contents);
                    self.count_sent(t.proto, t.source, t.destination, t.contents.len());
                    if let Some(relay) = self
                        .relayed
                        .get(&t.source)
                        .and_then(|i| self.relays.get(*i))
                    {
                        relay.send(t.destination, t.contents.to_vec());
                    } else if let Some(socket) = self.hosts.socket_for(t.source) {
                        if let Err(e) = socket.send_to(&t.contents, t.destination).await {
                            log::debug!("{:?}: send to {} failed: {e}", self.role, t.destination);
                        }
                    }
                }
                Ok(Output::Event(e)) => self.event(e).await,
                Err(e) => {
                    self.emit(PeerEvent::Closed(format!("peer connection failed: {e}")))
                        .await;
                    return None;
                }
            }
        }
    }

    async fn event(&mut self, e: Event) {
        match e {
            Event::Connected => {
                self.measured.dtls_connected = true;
                self.emit(PeerEvent::Connected).await
            }
            Event::IceConnectionStateChange(s) => {
                log::debug!("{:?}: ICE {s:?}", self.role);
                if matches!(
                    s,
                    IceConnectionState::Connected | IceConnectionState::Completed
                ) {
                    // A path (re)established gets its own time before it is judged.
                    self.path_heard = Instant::now();
                    self.silence_reported = false;
                }
                self.measured.ice = match s {
                    IceConnectionState::New => stats::IceState::New,
                    IceConnectionState::Checking => stats::IceState::Checking,
                    IceConnectionState::Connected => stats::IceState::Connected,
                    IceConnectionState::Completed => stats::IceState::Completed,
                    IceConnectionState::Disconnected => stats::IceState::Disconnected,
                };
                self.emit(PeerEvent::IceState(s)).await
            }
            Event::ChannelOpen(id, label) => {
                log::debug!("{:?}: channel {label} open", self.role);
                let kind = if label == DataKind::Lossy.label() {
                    DataKind::Lossy
                } else {
                    DataKind::Reliable
                };
                self.channels.insert(id, kind);
                self.measured.channels_opened += 1;
                self.channel_stats.insert(
                    id,
                    ChannelStats {
                        label: label.clone(),
                        id: channel_number(id),
                        open: true,
                        ..Default::default()
                    },
                );
                if let Some(mut ch) = self.rtc.channel(id) {
                    ch.set_buffered_amount_low_threshold(SEND_LOW_WATER);
                }
                // Our own channels carry what we send; one the server opened is used
                // only while none of ours is open.
                if self.ours.contains(&id) {
                    self.open.insert(kind, id);
                } else {
                    self.open.entry(kind).or_insert(id);
                }
                self.emit(PeerEvent::ChannelOpen(kind)).await;
            }
            Event::ChannelData(d) => {
                if let Some(c) = self.channel_stats.get_mut(&d.id) {
                    c.messages_received += 1;
                    c.bytes_received += d.data.len() as u64;
                }
                let kind = self
                    .channels
                    .get(&d.id)
                    .copied()
                    .unwrap_or(DataKind::Reliable);
                self.emit(PeerEvent::Data {
                    kind,
                    bytes: d.data,
                })
                .await;
            }
            Event::ChannelClose(id) => {
                log::debug!("{:?}: channel {id:?} closed", self.role);
                self.measured.channels_closed += 1;
                if let Some(c) = self.channel_stats.get_mut(&id) {
                    c.open = false;
                }
                self.ours.retain(|c| *c != id);
                if let Some(kind) = self.channels.remove(&id) {
                    if self.open.get(&kind) == Some(&id) {
                        self.open.remove(&kind);
                        // Another open channel of the kind takes over (ours first);
                        // with none, what waits stays queued for the next session.
                        let next = self
                            .channels
                            .iter()
                            .filter(|(_, k)| **k == kind)
                            .map(|(c, _)| *c)
                            .max_by_key(|c| self.ours.contains(c));
                        if let Some(next) = next {
                            self.open.insert(kind, next);
                        }
                    }
                }
            }
            Event::Closed => self.emit(PeerEvent::Closed("remote closed".into())).await,
            Event::MediaAdded(m) if m.kind == MediaKind::Audio => {
                self.audio_changed(m.mid, m.direction).await
            }
            Event::MediaChanged(m) => {
                let audio = self
                    .rtc
                    .media(m.mid)
                    .is_some_and(|media| media.kind() == MediaKind::Audio);
                if audio {
                    self.audio_changed(m.mid, m.direction).await
                }
            }
            Event::MediaData(d) => {
                if let Some(to) = self.receiving.get(&d.mid) {
                    let packet = AudioPacket {
                        seq: **d.seq_range.end(),
                        rtp_time: d.time.numer(),
                        data: d.data,
                    };
                    // A receiver that falls behind loses packets, never holds the transport.
                    if let Err(mpsc::error::TrySendError::Closed(_)) = to.try_send(packet) {
                        self.receiving.remove(&d.mid);
                    }
                }
            }
            _ => {}
        }
    }

    /// A remote audio media appeared or changed direction (subscriber side).
    async fn audio_changed(&mut self, mid: Mid, direction: Direction) {
        // Our own media (publisher) are not tracks we receive.
        if self.role != PeerRole::Subscriber {
            return;
        }
        let track_id = self
            .rtc
            .media(mid)
            .map(|m| m.track_id().to_owned())
            .unwrap_or_default();
        // The server's direction is the reverse of ours: it sends, we receive.
        let sending = direction.is_receiving();
        log::debug!(
            "{:?}: audio media {mid} ({track_id}) is {direction:?}",
            self.role
        );
        if !sending {
            self.receiving.remove(&mid);
        }
        self.emit(PeerEvent::AudioTrack {
            mid: mid.to_string(),
            track_id,
            sending,
        })
        .await;
    }

    /// Hands one encoded packet of a track to its media; dropped before the media is
    /// negotiated and connected (a real-time packet is worth nothing later).
    fn write_audio(&mut self, audio: EncodedAudio) {
        let Some(Some(mid)) = self.sending.get(&audio.cid).copied() else {
            return;
        };
        let Some(writer) = self.rtc.writer(mid) else {
            return;
        };
        let Some(pt) = writer
            .payload_params()
            .find(|p| p.spec().codec == Codec::Opus)
            .map(|p| p.pt())
        else {
            return;
        };
        let time = MediaTime::new(audio.rtp_time, Frequency::FORTY_EIGHT_KHZ);
        let writer = writer.audio_level(audio.level, audio.voice);
        if let Err(e) = writer.write(pt, Instant::now(), time, audio.data) {
            log::debug!("{:?}: audio not sent: {e}", self.role);
        }
    }

    /// Hands queued packets to SCTP, in order, while each channel is below the
    /// high-water mark; drains the `Rtc` after every write.
    async fn flush_outbox(&mut self) {
        let Some(outbox) = self.outbox.clone() else {
            return;
        };
        for kind in [DataKind::Reliable, DataKind::Lossy] {
            let Some(id) = self.open.get(&kind).copied() else {
                continue;
            };
            loop {
                let finished = {
                    let Some(mut ch) = self.rtc.channel(id) else {
                        break;
                    };
                    if ch.buffered_amount() >= SEND_HIGH_WATER {
                        break;
                    }
                    let mut queue = outbox.lock();
                    let Some(bytes) = queue.front(kind) else {
                        break;
                    };
                    let size = bytes.len() as u64;
                    match ch.write(true, bytes) {
                        Ok(true) => {
                            if let Some(c) = self.channel_stats.get_mut(&id) {
                                c.messages_sent += 1;
                                c.bytes_sent += size;
                            }
                            queue.written(kind).map(|done| (done, Ok(())))
                        }
                        Ok(false) => break,
                        Err(e) => queue.discard_front(kind).map(|done| {
                            (
                                done,
                                Err(Error::Rtc(format!("data channel write failed: {e}"))),
                            )
                        }),
                    }
                };
                if let Some((done, result)) = finished {
                    done(result);
                }
                if self.drain().await.is_none() {
                    return;
                }
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Stats(reply) => {
                let _ = reply.send(self.snapshot());
            }
            Command::Flush(reply) => {
                self.flushing.push(reply);
                self.check_flushed();
            }
            Command::AddAudio(cid) => {
                if !self.sending.contains_key(&cid) {
                    self.sending.insert(cid.clone(), None);
                    self.to_add.push(cid);
                }
            }
            Command::RemoveAudio(cid) => {
                self.to_add.retain(|c| *c != cid);
                if let Some(Some(mid)) = self.sending.remove(&cid) {
                    self.to_stop.push(mid);
                }
            }
            Command::RouteAudio(mid, to) => {
                let mid = Mid::from(mid.as_str());
                match to {
                    Some(to) => self.receiving.insert(mid, to),
                    None => self.receiving.remove(&mid),
                };
            }
            Command::CreateOffer(reply) => {
                let mut api = self.rtc.sdp_api();
                for cid in self.to_add.drain(..) {
                    let mid = api.add_media(
                        MediaKind::Audio,
                        Direction::SendOnly,
                        None,
                        Some(cid.clone()),
                        None,
                    );
                    self.sending.insert(cid, Some(mid));
                }
                for mid in self.to_stop.drain(..) {
                    api.set_direction(mid, Direction::Inactive);
                }
                if self.open.is_empty() && self.channels.is_empty() {
                    let reliable = api.add_channel_with_config(ChannelConfig {
                        label: DataKind::Reliable.label().into(),
                        ordered: true,
                        reliability: Reliability::Reliable,
                        negotiated: None,
                        protocol: String::new(),
                    });
                    let lossy = api.add_channel_with_config(ChannelConfig {
                        label: DataKind::Lossy.label().into(),
                        ordered: false,
                        reliability: Reliability::MaxRetransmits { retransmits: 0 },
                        negotiated: None,
                        protocol: String::new(),
                    });
                    self.ours.extend([reliable, lossy]);
                }
                let result = match api.apply() {
                    Some((offer, pending)) => {
                        self.pending_offer = Some(pending);
                        Ok(Some(offer.to_sdp_string()))
                    }
                    None => Ok(None),
                };
                let _ = reply.send(result);
            }
            Command::IceRestartOffer(reply) => {
                let mut api = self.rtc.sdp_api();
                api.ice_restart(true);
                let result = match api.apply() {
                    Some((offer, pending)) => {
                        self.pending_offer = Some(pending);
                        Ok(offer.to_sdp_string())
                    }
                    None => Err(Error::Rtc("nothing to offer".into())),
                };
                let _ = reply.send(result);
            }
            Command::AcceptAnswer(sdp, reply) => {
                let result = (|| {
                    let pending = self
                        .pending_offer
                        .take()
                        .ok_or_else(|| Error::Rtc("answer without a pending offer".into()))?;
                    let answer = SdpAnswer::from_sdp_string(&sdp)
                        .map_err(|e| Error::Rtc(format!("bad answer SDP: {e}")))?;
                    self.rtc
                        .sdp_api()
                        .accept_answer(pending, answer)
                        .map_err(|e| Error::Rtc(format!("answer refused: {e}")))?;
                    let max = sdp::max_message_size(&sdp);
                    if let Some(outbox) = &self.outbox {
                        outbox.set_max_message_size(max);
                    }
                    Ok(())
                })();
                if result.is_ok() {
                    self.remote_described();
                }
                let _ = reply.send(result);
            }
            Command::AcceptOffer(sdp, reply) => {
                let result = (|| {
                    let offer = SdpOffer::from_sdp_string(&sdp)
                        .map_err(|e| Error::Rtc(format!("bad offer SDP: {e}")))?;
                    let answer = self
                        .rtc
                        .sdp_api()
                        .accept_offer(offer)
                        .map_err(|e| Error::Rtc(format!("offer refused: {e}")))?;
                    Ok(answer.to_sdp_string())
                })();
                if result.is_ok() {
                    self.remote_described();
                }
                let _ = reply.send(result);
            }
            Command::AddRemoteCandidate(c) => {
                self.remote_candidates.insert(c.addr(), c.clone());
                if self.remote_ips.insert(c.addr().ip()) {
                    for relay in &self.relays {
                        relay.permit(c.addr().ip());
                    }
                }
                if self.remote_described {
                    self.rtc.add_remote_candidate(c);
                } else {
                    self.early_candidates.push(c);
                }
            }
        }
    }

    /// Remote candidates that came before the description are added by the run loop
    /// from now on, one per round.
    fn remote_described(&mut self) {
        self.remote_described = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trickle_candidates_parse_and_only_passive_tcp_is_kept() {
        let udp = r#"{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 7882 typ host","sdpMid":"0","sdpMLineIndex":0}"#;
        let c = parse_candidate_init(udp).unwrap().unwrap();
        assert_eq!(c.addr(), "127.0.0.1:7882".parse().unwrap());
        let tcp = r#"{"candidate":"candidate:2 1 tcp 1671430143 127.0.0.1 7881 typ host tcptype passive","sdpMid":"0"}"#;
        let c = parse_candidate_init(tcp).unwrap().unwrap();
        assert_eq!(
            (c.proto(), c.addr()),
            (Protocol::Tcp, "127.0.0.1:7881".parse().unwrap())
        );
        let active = r#"{"candidate":"candidate:3 1 tcp 1518280447 10.0.0.2 9 typ host tcptype active","sdpMid":"0"}"#;
        assert!(parse_candidate_init(active).unwrap().is_none());
        assert!(parse_candidate_init(r#"{"candidate":""}"#)
            .unwrap()
            .is_none());
        assert!(parse_candidate_init("nope").is_err());
    }

    #[tokio::test]
    async fn late_candidates_are_trickled_once_and_never_lost() {
        let (events, _rx) = mpsc::channel(16);
        let ice = IceConfig::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let pc = PeerConnection::new(PeerRole::Publisher, ip, &ice, events, None)
            .await
            .unwrap();
        // Found before any m-line is known: kept for the first trickle.
        let early = "candidate:1 1 udp 1 203.0.113.1 4000 typ srflx raddr 0.0.0.0 rport 0";
        assert_eq!(pc.gathered(early.to_owned()), None);
        let first = pc.local_candidate_inits("0", 0);
        assert!(first.iter().any(|c| c.contains("typ host")), "{first:?}");
        assert!(first.iter().any(|c| c.contains("203.0.113.1")), "{first:?}");
        // Found later: sent at once, for the same m-line, and again after a restart.
        let late = "candidate:2 1 udp 1 198.51.100.1 5000 typ relay raddr 0.0.0.0 rport 0";
        let init = pc.gathered(late.to_owned()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&init).unwrap();
        assert_eq!(v["candidate"], late);
        assert_eq!(v["sdpMid"], "0");
        assert_eq!(pc.local_candidate_inits("0", 0).len(), first.len() + 1);
    }

    #[tokio::test]
    async fn no_host_offers_no_host_and_relay_only_needs_a_turn_server() {
        let (events, _rx) = mpsc::channel(16);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let no_host = IceConfig {
            policy: IcePolicy::NoHost,
            ..Default::default()
        };
        let pc = PeerConnection::new(PeerRole::Subscriber, ip, &no_host, events.clone(), None)
            .await
            .unwrap();
        assert!(pc.local_candidate_inits("0", 0).is_empty());
        let relay = IceConfig {
            policy: IcePolicy::Relay,
            ..Default::default()
        };
        let refused = PeerConnection::new(PeerRole::Subscriber, ip, &relay, events, None).await;
        assert!(matches!(refused, Err(Error::Rtc(m)) if m.contains("TURN")));
    }

    #[test]
    fn loopback_routes_to_loopback() {
        assert!(route_ip("127.0.0.1".parse().unwrap()).is_loopback());
    }
}
