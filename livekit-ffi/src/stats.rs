//! What a peer connection measures about itself, for `Room.get_rtc_stats`: its
//! transport's traffic, the path ICE chose (with both candidates, a relay's server
//! and protocol among them) and its data channels. The peer's task counts as
//! packets pass (a few additions each); a snapshot is taken on request.

use std::net::SocketAddr;

use crate::ice::TurnTransport;

/// One side of the chosen path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidateStats {
    pub addr: SocketAddr,
    /// "udp" or "tcp".
    pub protocol: &'static str,
    pub kind: CandidateType,
    pub priority: u32,
    pub foundation: String,
    /// For a relay: how we reach its TURN server, and the server's URL.
    pub relay: Option<(TurnTransport, String)>,
    /// For an ICE-TCP candidate: whether it connects out (active) or listens.
    pub tcp_active: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandidateType {
    Host,
    ServerReflexive,
    PeerReflexive,
    Relay,
}

/// The candidate pair packets other than ICE checks go through.
#[derive(Debug, Clone, PartialEq)]
pub struct PathStats {
    pub local: CandidateStats,
    pub remote: CandidateStats,
    pub traffic: Traffic,
    /// Milliseconds since the Unix epoch of the last packet each way (0: none yet).
    pub last_sent_ms: f64,
    pub last_received_ms: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub packets_sent: u64,
    pub bytes_sent: u64,
    pub packets_received: u64,
    pub bytes_received: u64,
}

impl Traffic {
    pub fn sent(&mut self, bytes: usize) {
        self.packets_sent += 1;
        self.bytes_sent += bytes as u64;
    }

    pub fn received(&mut self, bytes: usize) {
        self.packets_received += 1;
        self.bytes_received += bytes as u64;
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelStats {
    pub label: String,
    pub id: i32,
    pub open: bool,
    pub messages_sent: u32,
    pub bytes_sent: u64,
    pub messages_received: u32,
    pub bytes_received: u64,
}

/// The ICE state as the W3C names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IceState {
    #[default]
    New,
    Checking,
    Connected,
    Completed,
    Disconnected,
}

/// One peer connection, at the time of the request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeerStats {
    /// We start ICE checks (the publisher offers; the server offers the subscriber).
    pub controlling: bool,
    pub ice: IceState,
    pub dtls_connected: bool,
    pub transport: Traffic,
    pub path: Option<PathStats>,
    pub path_changes: u32,
    pub channels: Vec<ChannelStats>,
    pub channels_opened: u32,
    pub channels_closed: u32,
}

/// The foundation of a candidate in its SDP form ("candidate:FOUNDATION 1 udp ...").
pub fn foundation(sdp: &str) -> String {
    sdp.strip_prefix("candidate:")
        .unwrap_or(sdp)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_counts_and_foundations_parse() {
        let mut t = Traffic::default();
        t.sent(100);
        t.sent(20);
        t.received(7);
        assert_eq!(
            t,
            Traffic {
                packets_sent: 2,
                bytes_sent: 120,
                packets_received: 1,
                bytes_received: 7
            }
        );
        assert_eq!(
            foundation("candidate:2130706431 1 udp 2130706431 10.0.0.1 5000 typ host"),
            "2130706431"
        );
        assert_eq!(foundation("a b"), "a");
        assert_eq!(foundation(""), "");
    }
}
