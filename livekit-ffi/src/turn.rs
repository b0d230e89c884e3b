//! One TURN allocation (RFC 8656) of a peer connection: a relayed address on a TURN
//! server that the peer's ICE agent uses as a local candidate.
//!
//! The protocol is turn-client-proto's (sans-IO, with TLS by turn-client-rustls);
//! this module is its I/O: a task that owns the socket to the TURN server (UDP, TCP
//! or TLS over TCP), wraps what the peer sends to a remote address into Send
//! indications or ChannelData, and unwraps what the server relays back. Permissions
//! are asked for each remote address the peer talks to, and over UDP a channel is
//! bound once one is granted (4 bytes of overhead a packet instead of 36). Over TCP
//! and TLS packets stay Send and Data indications: ChannelData there must be padded
//! to 4 bytes (RFC 8656, 12.5), which turn-client-proto 0.7 neither writes nor reads.
//!
//! The task ends, deleting its allocation, when the peer drops its handle.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use turn_client_proto::api::{TurnClientApi, TurnConfig, TurnEvent, TurnPollRet, TurnRecvRet};
use turn_client_proto::stun::agent::Transmit;
use turn_client_proto::stun::types::TransportType;
use turn_client_proto::tcp::TurnClientTcp;
use turn_client_proto::types::{Instant as TurnInstant, TurnCredentials};
use turn_client_proto::udp::TurnClientUdp;
use turn_client_rustls::TurnClientRustls;

use crate::ice::TurnTransport;

/// How long reaching the TURN server and getting an allocation may take.
const ALLOCATE_TIMEOUT: Duration = Duration::from_secs(10);
/// Packets from the peer waiting for the task, and relayed packets waiting for the
/// peer; past either bound packets are dropped, as a congested path would.
const QUEUE: usize = 1024;

turn_client_proto::impl_client!(
    Client,
    (Udp, TurnClientUdp),
    (Tcp, TurnClientTcp),
    (Tls, TurnClientRustls)
);

/// A TURN server to allocate on.
#[derive(Debug, Clone)]
pub struct TurnServer {
    pub host: String,
    pub port: u16,
    pub transport: TurnTransport,
    pub username: String,
    pub credential: String,
}

impl std::fmt::Display for TurnServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match self.transport {
            TurnTransport::Tls => "turns",
            _ => "turn",
        };
        let transport = match self.transport {
            TurnTransport::Udp => "udp",
            _ => "tcp",
        };
        write!(
            f,
            "{scheme}:{}:{}?transport={transport}",
            self.host, self.port
        )
    }
}

/// What a relay tells its peer; `id` is the relay's index among the peer's.
#[derive(Debug)]
pub enum RelayEvent {
    /// The allocation is made: `relayed` is the candidate's address, `local` our
    /// end of the connection to the TURN server.
    Allocated {
        id: usize,
        relayed: SocketAddr,
        local: SocketAddr,
    },
    /// `data` came from `from` through relayed address `relayed`.
    Data {
        relayed: SocketAddr,
        from: SocketAddr,
        data: Vec<u8>,
    },
    /// No allocation (any more): the server is unreachable, refused us, or closed.
    Failed { id: usize, reason: String },
}

enum Command {
    Send(SocketAddr, Vec<u8>),
    Permit(IpAddr),
}

/// The peer's handle to one relay task.
pub struct Relay {
    tx: mpsc::Sender<Command>,
    server: String,
    transport: TurnTransport,
}

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, String),
    #[error("cannot reach the TURN server: {0}")]
    Io(#[from] std::io::Error),
    #[error("no allocation within {0:?}")]
    Timeout(Duration),
    #[error("the server refused the allocation")]
    Refused,
    #[error("the TURN server closed the allocation")]
    Closed,
    #[error("bad TLS server name {0:?}")]
    ServerName(String),
}

impl Relay {
    /// Starts allocating on `server` from an address of `local_ip`'s family; events
    /// go to `events`.
    pub fn start(
        id: usize,
        server: TurnServer,
        local_ip: IpAddr,
        tls: Arc<rustls::ClientConfig>,
        events: mpsc::Sender<RelayEvent>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let described = server.to_string();
        let name = described.clone();
        let transport = server.transport;
        tokio::spawn(async move {
            if let Err(e) = run(id, server, local_ip, tls, rx, &events).await {
                log::warn!("TURN {described}: {e}");
                let _ = events
                    .send(RelayEvent::Failed {
                        id,
                        reason: e.to_string(),
                    })
                    .await;
            }
        });
        Self {
            tx,
            server: name,
            transport,
        }
    }

    /// How the relay reaches its TURN server.
    pub fn transport(&self) -> TurnTransport {
        self.transport
    }

    /// The TURN server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Relays `data` to `to`; dropped when the relay is behind or gone.
    pub fn send(&self, to: SocketAddr, data: Vec<u8>) {
        let _ = self.tx.try_send(Command::Send(to, data));
    }

    /// Asks the server in advance to let `peer` talk to us: a remote candidate is
    /// known, and its first checks should not be lost waiting for the permission.
    pub fn permit(&self, peer: IpAddr) {
        let _ = self.tx.try_send(Command::Permit(peer));
    }
}

/// The connection to the TURN server.
enum Link {
    Udp(UdpSocket),
    Tcp(TcpStream),
}

impl Link {
    async fn send(&mut self, to: SocketAddr, data: &[u8]) -> std::io::Result<()> {
        match self {
            Link::Udp(s) => s.send_to(data, to).await.map(|_| ()),
            Link::Tcp(s) => s.write_all(data).await,
        }
    }

    /// The next bytes from the server; empty when a TCP connection closed.
    async fn recv(&mut self, buf: &mut [u8], server: SocketAddr) -> std::io::Result<usize> {
        match self {
            Link::Udp(s) => loop {
                let (n, from) = s.recv_from(buf).await?;
                if from == server {
                    return Ok(n);
                }
            },
            Link::Tcp(s) => s.read(buf).await,
        }
    }
}

/// Allocates, then relays until the peer drops its handle.
async fn run(
    id: usize,
    server: TurnServer,
    local_ip: IpAddr,
    tls: Arc<rustls::ClientConfig>,
    mut commands: mpsc::Receiver<Command>,
    events: &mpsc::Sender<RelayEvent>,
) -> Result<(), RelayError> {
    let described = server.to_string();
    // Reaching the server may take seconds; the peer may be gone by then.
    let reached = tokio::select! {
        r = reach(&server, local_ip) => r?,
        _ = events.closed() => return Ok(()),
    };
    let (mut link, remote, local) = reached;
    let config = TurnConfig::new(TurnCredentials::new(&server.username, &server.credential));
    let mut client = match server.transport {
        TurnTransport::Udp => Client::Udp(TurnClientUdp::allocate(local, remote, config)),
        TurnTransport::Tcp => Client::Tcp(TurnClientTcp::allocate(local, remote, config)),
        TurnTransport::Tls => {
            let name = ServerName::try_from(server.host.clone())
                .map_err(|_| RelayError::ServerName(server.host.clone()))?;
            Client::Tls(TurnClientRustls::allocate(local, remote, config, name, tls))
        }
    };
    let transport = match server.transport {
        TurnTransport::Udp => TransportType::Udp,
        _ => TransportType::Tcp,
    };
    let clock = Clock(std::time::Instant::now());
    let allocate_by = tokio::time::Instant::now() + ALLOCATE_TIMEOUT;
    let mut relayed: Option<SocketAddr> = None;
    // Remote addresses we asked a permission for, and those sent to since.
    let mut permitted: HashSet<IpAddr> = HashSet::new();
    let mut talked_to: HashSet<SocketAddr> = HashSet::new();
    // Addresses with a channel (or that never get one: see the module's doc).
    let mut bound: HashSet<SocketAddr> = HashSet::new();
    let channels = server.transport == TurnTransport::Udp;
    let mut buf = vec![0u8; 65536];
    loop {
        let now = clock.now();
        while let Some(t) = client.poll_transmit(now) {
            link.send(t.to, &t.data).await?;
        }
        while let Some(ev) = client.poll_event() {
            match ev {
                TurnEvent::AllocationCreated(TransportType::Udp, addr) => {
                    log::debug!("TURN {described}: relayed address {addr}");
                    relayed = Some(addr);
                    let _ = events
                        .send(RelayEvent::Allocated {
                            id,
                            relayed: addr,
                            local,
                        })
                        .await;
                }
                TurnEvent::AllocationCreateFailed(_) => return Err(RelayError::Refused),
                TurnEvent::PermissionCreated(_, ip) => {
                    for peer in talked_to.iter().filter(|a| a.ip() == ip) {
                        if channels && bound.insert(*peer) {
                            let _ = client.bind_channel(TransportType::Udp, *peer, now);
                        }
                    }
                }
                TurnEvent::PermissionCreateFailed(_, ip) => {
                    log::debug!("TURN {described}: no permission for {ip}");
                    permitted.remove(&ip);
                }
                other => log::trace!("TURN {described}: {other:?}"),
            }
        }
        let wake = match client.poll(now) {
            TurnPollRet::WaitUntil(at) => clock.at(at),
            TurnPollRet::Closed => return Err(RelayError::Closed),
            // We make no TCP allocations (RFC 6062): nothing to connect or close. A
            // server that asks anyway is looked at again a second later, not in a
            // busy loop.
            TurnPollRet::AllocateTcpSocket { .. } | TurnPollRet::TcpClose { .. } => {
                tokio::time::Instant::now() + Duration::from_secs(1)
            }
        };
        let wake = if relayed.is_none() {
            wake.min(allocate_by)
        } else {
            wake
        };
        tokio::select! {
            cmd = commands.recv() => match cmd {
                None => {
                    // The peer is gone: free the allocation on the server, best effort.
                    let now = clock.now();
                    if client.delete(now).is_ok() {
                        while let Some(t) = client.poll_transmit(now) {
                            let _ = link.send(t.to, &t.data).await;
                        }
                    }
                    return Ok(());
                }
                Some(Command::Permit(ip)) => {
                    if permitted.insert(ip)
                        && client.create_permission(TransportType::Udp, ip, now).is_err()
                    {
                        permitted.remove(&ip);
                    }
                }
                Some(Command::Send(to, data)) => {
                    if !client.have_permission(TransportType::Udp, to.ip()) {
                        // ICE checks are retried; this one is lost while the
                        // permission is asked for.
                        if permitted.insert(to.ip())
                            && client.create_permission(TransportType::Udp, to.ip(), now).is_err()
                        {
                            permitted.remove(&to.ip());
                        }
                        talked_to.insert(to);
                        continue;
                    }
                    if talked_to.insert(to) && channels && bound.insert(to) {
                        let _ = client.bind_channel(TransportType::Udp, to, now);
                    }
                    match client.send_to(TransportType::Udp, to, data, now) {
                        Ok(Some(t)) => {
                            let t = t.build();
                            link.send(t.to, &t.data).await?;
                        }
                        Ok(None) => {}
                        Err(e) => log::trace!("TURN {described}: not relayed to {to}: {e}"),
                    }
                }
            },
            r = link.recv(&mut buf, remote) => {
                let n = r?;
                if n == 0 {
                    return Err(RelayError::Closed);
                }
                let now = clock.now();
                let incoming = Transmit::new(&buf[..n], transport, remote, local);
                let deliver = |from: SocketAddr, data: Vec<u8>| {
                    if let Some(relayed) = relayed {
                        let _ = events.try_send(RelayEvent::Data { relayed, from, data });
                    }
                };
                match client.recv(incoming, now) {
                    TurnRecvRet::PeerData(d) => deliver(d.peer, d.data().to_vec()),
                    TurnRecvRet::Handled | TurnRecvRet::Ignored(_) => {}
                    TurnRecvRet::PeerIcmp { peer, icmp_type, .. } => {
                        log::debug!("TURN {described}: ICMP {icmp_type} from {peer}");
                    }
                }
                // A TCP read may hold several messages.
                while let Some(d) = client.poll_recv(now) {
                    deliver(d.peer, d.data().to_vec());
                }
            }
            _ = tokio::time::sleep_until(wake) => {
                if relayed.is_none() && tokio::time::Instant::now() >= allocate_by {
                    return Err(RelayError::Timeout(ALLOCATE_TIMEOUT));
                }
            }
        }
    }
}

/// Resolves the server and opens our end toward it: the link, the server's
/// address and ours.
async fn reach(
    server: &TurnServer,
    local_ip: IpAddr,
) -> Result<(Link, SocketAddr, SocketAddr), RelayError> {
    let remote = resolve(&server.host, server.port, local_ip).await?;
    // Our own address of the server's family: the routed one when it matches.
    let bind_ip = if local_ip.is_ipv6() == remote.is_ipv6() {
        local_ip
    } else if remote.is_ipv6() {
        [0u16; 8].into()
    } else {
        [0u8; 4].into()
    };
    let link = match server.transport {
        TurnTransport::Udp => Link::Udp(UdpSocket::bind(SocketAddr::new(bind_ip, 0)).await?),
        TurnTransport::Tcp | TurnTransport::Tls => {
            let stream = tokio::time::timeout(ALLOCATE_TIMEOUT, TcpStream::connect(remote))
                .await
                .map_err(|_| RelayError::Timeout(ALLOCATE_TIMEOUT))??;
            stream.set_nodelay(true)?;
            Link::Tcp(stream)
        }
    };
    let local = match &link {
        Link::Udp(s) => s.local_addr()?,
        Link::Tcp(s) => s.local_addr()?,
    };
    Ok((link, remote, local))
}

/// The protocol's clock: nanoseconds since the relay started.
struct Clock(std::time::Instant);

impl Clock {
    fn now(&self) -> TurnInstant {
        let nanos = i64::try_from(self.0.elapsed().as_nanos()).unwrap_or(i64::MAX);
        TurnInstant::from_nanos(nanos)
    }

    fn at(&self, at: TurnInstant) -> tokio::time::Instant {
        let nanos = u64::try_from(at.as_nanos()).unwrap_or(0);
        tokio::time::Instant::from_std(self.0 + Duration::from_nanos(nanos))
    }
}

/// The server's address, of `local_ip`'s family when it has one.
async fn resolve(host: &str, port: u16, local_ip: IpAddr) -> Result<SocketAddr, RelayError> {
    let found = crate::resolve::lookup(host, port).await;
    found
        .iter()
        .find(|a| a.is_ipv6() == local_ip.is_ipv6())
        .or(found.first())
        .copied()
        .ok_or_else(|| RelayError::Resolve(host.to_owned(), "no address".into()))
}
