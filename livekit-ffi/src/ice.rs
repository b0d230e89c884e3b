//! Where a peer connection looks for paths to the server, and which it may use.
//!
//! The user's `RtcConfiguration` (transport policy, ICE servers, gathering policy)
//! meets what the server says in its join: its TURN servers, and `force_relay` when
//! it has seen this participant fail over UDP and TCP. `IceConfig::for_session`
//! merges the two the way the official SDKs do: the user's servers replace the
//! server's, and a forced relay wins over the user's policy.
//!
//! Also here, free of I/O: the STUN and TURN URLs of RFC 7064 / 7065, the STUN
//! binding that finds our server-reflexive address, and which interface addresses
//! make host candidates.

use std::net::{IpAddr, SocketAddr};

use livekit_protocol as proto;
use turn_client_proto::stun::types::attribute::XorMappedAddress;
use turn_client_proto::stun::types::message::{
    Message, MessageClass, MessageWrite, MessageWriteExt, MessageWriteVec, TransactionId, BINDING,
};

/// Which candidates a peer connection gathers and offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IcePolicy {
    /// Host, server-reflexive and relay candidates.
    #[default]
    All,
    /// No host candidate is offered (the local addresses stay private); checks still
    /// leave from them, so the server learns them only as peer-reflexive.
    NoHost,
    /// Only relay candidates: every packet goes through a TURN server.
    Relay,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceConfig {
    pub policy: IcePolicy,
    pub servers: Vec<IceServer>,
    /// Keep looking for new interface addresses while connected (GATHER_CONTINUALLY).
    pub gather_continually: bool,
}

impl Default for IceConfig {
    /// As the official SDKs: every candidate, the server's ICE servers, and
    /// continual gathering (a device that changes networks keeps its session).
    fn default() -> Self {
        Self {
            policy: IcePolicy::All,
            servers: Vec::new(),
            gather_continually: true,
        }
    }
}

impl IceConfig {
    /// The configuration of one session: `user`'s servers if it has any, else the
    /// server's; relay only when the server forces it.
    pub fn for_session(
        user: &IceConfig,
        server: &[proto::IceServer],
        client_config: Option<&proto::ClientConfiguration>,
    ) -> IceConfig {
        let mut config = user.clone();
        if config.servers.is_empty() {
            config.servers = server.iter().map(IceServer::from).collect();
        }
        let forced = client_config
            .is_some_and(|c| c.force_relay == proto::ClientConfigSetting::Enabled as i32);
        if forced {
            config.policy = IcePolicy::Relay;
        }
        config
    }

    /// Every usable URL of every server, with its credentials; what cannot be used
    /// is logged and skipped (one bad URL must not cost the others).
    pub fn urls(&self) -> Vec<ServerUrl> {
        let mut out = Vec::new();
        for server in &self.servers {
            for url in &server.urls {
                match ServerUrl::parse(url, &server.username, &server.credential) {
                    Ok(u) if !out.contains(&u) => out.push(u),
                    Ok(_) => {}
                    Err(e) => log::warn!("skipping ICE server {url:?}: {e}"),
                }
            }
        }
        out
    }
}

/// How a TURN client reaches its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnTransport {
    Udp,
    Tcp,
    Tls,
}

/// One STUN or TURN server, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerUrl {
    Stun {
        host: String,
        port: u16,
    },
    Turn {
        host: String,
        port: u16,
        transport: TurnTransport,
        username: String,
        credential: String,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("unknown scheme (expected stun:, stuns:, turn: or turns:)")]
    Scheme,
    #[error("no host")]
    Host,
    #[error("bad port")]
    Port,
    #[error("unsupported transport {0:?}")]
    Transport(String),
    #[error("STUN over TLS is not supported")]
    Stuns,
    #[error("a TURN server needs a username and a credential")]
    Credentials,
}

impl ServerUrl {
    /// Parses `stun:host[:port]` or `turn[s]:host[:port][?transport=udp|tcp]`
    /// (RFC 7064, 7065), hosts being names, IPv4 or bracketed IPv6 addresses.
    pub fn parse(url: &str, username: &str, credential: &str) -> Result<Self, UrlError> {
        let url = url.trim();
        let (scheme, rest) = url.split_once(':').ok_or(UrlError::Scheme)?;
        let scheme = scheme.to_ascii_lowercase();
        let (authority, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let transport = query
            .and_then(|q| {
                q.split('&')
                    .find_map(|kv| kv.strip_prefix("transport="))
                    .map(str::to_ascii_lowercase)
            })
            .filter(|t| !t.is_empty());
        let secure = scheme.ends_with('s');
        let default_port = if secure { 5349 } else { 3478 };
        let (host, port) = split_host_port(authority, default_port)?;
        match scheme.as_str() {
            "stun" => Ok(Self::Stun { host, port }),
            "stuns" => Err(UrlError::Stuns),
            "turn" | "turns" => {
                let transport = match (secure, transport.as_deref()) {
                    (false, None | Some("udp")) => TurnTransport::Udp,
                    (false, Some("tcp")) => TurnTransport::Tcp,
                    (true, None | Some("tcp")) => TurnTransport::Tls,
                    (_, Some(other)) => return Err(UrlError::Transport(other.to_owned())),
                };
                if username.is_empty() || credential.is_empty() {
                    return Err(UrlError::Credentials);
                }
                Ok(Self::Turn {
                    host,
                    port,
                    transport,
                    username: username.to_owned(),
                    credential: credential.to_owned(),
                })
            }
            _ => Err(UrlError::Scheme),
        }
    }

    /// Where a STUN binding request may find our server-reflexive address: STUN
    /// servers, and TURN servers over UDP (every TURN server answers STUN too).
    pub fn stun_target(&self) -> Option<(&str, u16)> {
        match self {
            Self::Stun { host, port } => Some((host, *port)),
            Self::Turn {
                host,
                port,
                transport: TurnTransport::Udp,
                ..
            } => Some((host, *port)),
            Self::Turn { .. } => None,
        }
    }
}

fn split_host_port(authority: &str, default_port: u16) -> Result<(String, u16), UrlError> {
    // A scheme-relative "//host" is tolerated, as browsers do.
    let authority = authority.trim_start_matches("//");
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or(UrlError::Host)?;
        match after.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if after.is_empty() => (host, None),
            None => return Err(UrlError::Port),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return Err(UrlError::Host);
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or(UrlError::Port)?,
        None => default_port,
    };
    Ok((host.to_owned(), port))
}

/// The id a STUN answer carries back.
pub type StunTransaction = TransactionId;

/// A STUN binding request, and the transaction its answer will carry.
pub fn binding_request() -> (TransactionId, Vec<u8>) {
    let request = Message::builder_request(BINDING, MessageWriteVec::new());
    (request.transaction_id(), request.finish())
}

/// Our address as the STUN server saw it, if `packet` is the success answer to
/// transaction `id`.
pub fn mapped_address(packet: &[u8], id: TransactionId) -> Option<SocketAddr> {
    let msg = Message::from_bytes(packet).ok()?;
    if msg.transaction_id() != id
        || !msg.has_class(MessageClass::Success)
        || msg.method() != BINDING
    {
        return None;
    }
    let xor = msg.attribute::<XorMappedAddress>().ok()?;
    Some(xor.addr(id))
}

/// How many interface addresses become host candidates at most.
pub const MAX_HOST_ADDRESSES: usize = 8;

/// The addresses host candidates are made on: `routed` (the one that reaches the
/// server) first, then every other usable address of an interface that is up,
/// IPv4 and IPv6. A server reached on loopback is on this machine: `routed` alone
/// then (more pairs would only slow ICE down). Loopback is never used otherwise,
/// link-local and unspecified addresses never (they need a scope or reach nobody).
pub fn host_addresses(routed: IpAddr, interfaces: &[IpAddr]) -> Vec<IpAddr> {
    let mut out = vec![routed];
    if routed.is_loopback() {
        return out;
    }
    for ip in interfaces {
        if out.len() >= MAX_HOST_ADDRESSES {
            break;
        }
        let usable =
            !ip.is_unspecified() && !ip.is_multicast() && !ip.is_loopback() && !is_link_local(ip);
        if usable && !out.contains(ip) {
            out.push(*ip);
        }
    }
    out
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// The addresses of this machine's interfaces that are up (empty if they cannot be
/// listed: the routed address alone still works).
pub fn interface_addresses() -> Vec<IpAddr> {
    match if_addrs::get_if_addrs() {
        Ok(list) => list
            .into_iter()
            .filter(|i| i.is_oper_up())
            .map(|i| i.ip())
            .collect(),
        Err(e) => {
            log::debug!("cannot list the interfaces: {e}");
            Vec::new()
        }
    }
}

impl From<&proto::IceServer> for IceServer {
    fn from(s: &proto::IceServer) -> Self {
        Self {
            urls: s.urls.clone(),
            username: s.username.clone(),
            credential: s.credential.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(host: &str, port: u16, transport: TurnTransport) -> ServerUrl {
        ServerUrl::Turn {
            host: host.into(),
            port,
            transport,
            username: "u".into(),
            credential: "p".into(),
        }
    }

    #[test]
    fn urls_parse_with_their_defaults() {
        let p = |s: &str| ServerUrl::parse(s, "u", "p");
        assert_eq!(
            p("stun:stun.example.org"),
            Ok(ServerUrl::Stun {
                host: "stun.example.org".into(),
                port: 3478
            })
        );
        assert_eq!(
            p("turn:10.0.0.1:3479?transport=udp"),
            Ok(turn("10.0.0.1", 3479, TurnTransport::Udp))
        );
        assert_eq!(
            p("turn:10.0.0.1"),
            Ok(turn("10.0.0.1", 3478, TurnTransport::Udp))
        );
        assert_eq!(
            p("turn:h:80?transport=tcp"),
            Ok(turn("h", 80, TurnTransport::Tcp))
        );
        assert_eq!(
            p("turns:turn.example.org:443?transport=tcp"),
            Ok(turn("turn.example.org", 443, TurnTransport::Tls))
        );
        assert_eq!(
            p("TURNS:turn.example.org"),
            Ok(turn("turn.example.org", 5349, TurnTransport::Tls))
        );
        assert_eq!(
            p("turn:[2001:db8::1]:3478"),
            Ok(turn("2001:db8::1", 3478, TurnTransport::Udp))
        );
        assert_eq!(p("http://x"), Err(UrlError::Scheme));
        assert_eq!(p("turn:"), Err(UrlError::Host));
        assert_eq!(p("turn:h:0"), Err(UrlError::Port));
        assert_eq!(p("turn:h:99999"), Err(UrlError::Port));
        assert_eq!(
            p("turns:h?transport=udp"),
            Err(UrlError::Transport("udp".into()))
        );
        assert_eq!(p("stuns:h"), Err(UrlError::Stuns));
        assert_eq!(
            ServerUrl::parse("turn:h", "", ""),
            Err(UrlError::Credentials)
        );
        assert_eq!(p("nothing"), Err(UrlError::Scheme));
    }

    #[test]
    fn user_servers_replace_the_servers_and_force_relay_wins() {
        let from_server = vec![proto::IceServer {
            urls: vec!["turn:1.2.3.4:3478?transport=udp".into(), "bad:url".into()],
            username: "s".into(),
            credential: "c".into(),
        }];
        let user = IceConfig::default();
        let config = IceConfig::for_session(&user, &from_server, None);
        assert_eq!(config.policy, IcePolicy::All);
        assert_eq!(config.urls().len(), 1, "the bad URL is skipped");

        let user = IceConfig {
            servers: vec![IceServer {
                urls: vec!["stun:5.6.7.8".into()],
                ..Default::default()
            }],
            policy: IcePolicy::NoHost,
            gather_continually: true,
        };
        let forced = proto::ClientConfiguration {
            force_relay: proto::ClientConfigSetting::Enabled as i32,
            ..Default::default()
        };
        let config = IceConfig::for_session(&user, &from_server, Some(&forced));
        assert_eq!(config.policy, IcePolicy::Relay);
        assert_eq!(
            config.urls(),
            vec![ServerUrl::Stun {
                host: "5.6.7.8".into(),
                port: 3478
            }]
        );
        assert!(config.gather_continually);
        let unset = proto::ClientConfiguration::default();
        let config = IceConfig::for_session(&user, &from_server, Some(&unset));
        assert_eq!(config.policy, IcePolicy::NoHost);
    }

    #[test]
    fn binding_answer_gives_the_mapped_address() {
        let (id, request) = binding_request();
        let parsed = Message::from_bytes(&request).unwrap();
        assert!(parsed.has_class(MessageClass::Request));
        let seen: SocketAddr = "203.0.113.7:40000".parse().unwrap();
        let mut answer = Message::builder_success(&parsed, MessageWriteVec::new());
        answer
            .add_attribute(&XorMappedAddress::new(seen, id))
            .unwrap();
        let answer = answer.finish();
        assert_eq!(mapped_address(&answer, id), Some(seen));
        let (other, _) = binding_request();
        assert_eq!(mapped_address(&answer, other), None);
        assert_eq!(mapped_address(b"not stun", id), None);
    }

    #[test]
    fn host_addresses_skip_loopback_link_local_and_duplicates() {
        let routed: IpAddr = "10.0.0.2".parse().unwrap();
        let list: Vec<IpAddr> = [
            "127.0.0.1",
            "10.0.0.2",
            "192.168.1.5",
            "fe80::1",
            "2001:db8::5",
            "::1",
            "169.254.3.3",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let got = host_addresses(routed, &list);
        let want: Vec<IpAddr> = ["10.0.0.2", "192.168.1.5", "2001:db8::5"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(got, want);
        let on_loopback = host_addresses("127.0.0.1".parse().unwrap(), &list);
        assert_eq!(on_loopback, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
        let many: Vec<IpAddr> = (1..50).map(|i| IpAddr::from([10, 1, 0, i])).collect();
        assert_eq!(host_addresses(routed, &many).len(), MAX_HOST_ADDRESSES);
    }
}
