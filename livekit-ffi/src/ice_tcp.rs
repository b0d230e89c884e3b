//! ICE over TCP, the active side (RFC 6544): where UDP does not get through, the
//! server's passive TCP candidates still can. str0m pairs our active TCP candidate
//! with them like any other and hands us packets to send; this module opens one
//! connection per remote candidate, frames packets as RFC 4571 says (a 16-bit
//! big-endian length before each), and hands what arrives back to the peer's loop.
//!
//! Nothing here blocks the loop: sending queues the packet for the connection's own
//! writer task (opening the connection on first use), and a connection that fails is
//! opened again by the next packet for it, as ICE keeps checking.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// The port of an active candidate: it connects out and listens nowhere (RFC 6544).
pub const ACTIVE_PORT: u16 = 9;
/// How long opening one connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Packets waiting for one connection; past it (a stalled connection) they are
/// dropped, as a congested UDP path would drop them.
const QUEUE_PACKETS: usize = 512;

/// A packet that arrived on one of our connections, from `source`.
pub type Arrival = (SocketAddr, Vec<u8>);

/// The peer's TCP connections, by remote candidate address.
pub struct TcpLinks {
    links: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    arrivals: mpsc::Sender<Arrival>,
}

impl TcpLinks {
    /// Links whose arrivals come out of the returned receiver.
    pub fn new() -> (Self, mpsc::Receiver<Arrival>) {
        let (arrivals, rx) = mpsc::channel(QUEUE_PACKETS);
        (
            Self {
                links: HashMap::new(),
                arrivals,
            },
            rx,
        )
    }

    /// Our active candidate's address on `ip`.
    pub fn local_addr(ip: IpAddr) -> SocketAddr {
        SocketAddr::new(ip, ACTIVE_PORT)
    }

    /// Sends `packet` to `remote`, opening the connection if there is none (or the
    /// last one failed).
    pub fn send(&mut self, remote: SocketAddr, packet: &[u8]) {
        if packet.len() > usize::from(u16::MAX) {
            log::debug!(
                "ICE-TCP: a packet of {} bytes cannot be framed",
                packet.len()
            );
            return;
        }
        let alive = self.links.get(&remote).is_some_and(|tx| !tx.is_closed());
        if !alive {
            let (tx, rx) = mpsc::channel(QUEUE_PACKETS);
            tokio::spawn(run_link(remote, rx, self.arrivals.clone()));
            self.links.insert(remote, tx);
        }
        if let Some(tx) = self.links.get(&remote) {
            if tx.try_send(packet.to_vec()).is_err() {
                log::debug!("ICE-TCP: the connection to {remote} is behind; packet dropped");
            }
        }
    }
}

/// One connection: open it, then write what is queued and read what comes, until
/// either side fails or the links are dropped (the peer connection ended).
async fn run_link(
    remote: SocketAddr,
    mut outgoing: mpsc::Receiver<Vec<u8>>,
    arrivals: mpsc::Sender<Arrival>,
) {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(remote)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return log::debug!("ICE-TCP: cannot connect to {remote}: {e}"),
        Err(_) => return log::debug!("ICE-TCP: connecting to {remote} timed out"),
    };
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let reader = async {
        let mut len = [0u8; 2];
        loop {
            rd.read_exact(&mut len).await?;
            let mut packet = vec![0u8; usize::from(u16::from_be_bytes(len))];
            rd.read_exact(&mut packet).await?;
            if arrivals.send((remote, packet)).await.is_err() {
                return Ok::<(), std::io::Error>(());
            }
        }
    };
    let writer = async {
        let mut framed = Vec::with_capacity(2048);
        while let Some(packet) = outgoing.recv().await {
            framed.clear();
            framed.extend_from_slice(&(packet.len() as u16).to_be_bytes());
            framed.extend_from_slice(&packet);
            wr.write_all(&framed).await?;
        }
        Ok::<(), std::io::Error>(())
    };
    let ended = tokio::select! {
        r = reader => r,
        w = writer => w,
    };
    if let Err(e) = ended {
        log::debug!("ICE-TCP: the connection to {remote} ended: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn packets_are_framed_both_ways_and_a_lost_connection_is_opened_again() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let remote = listener.local_addr().unwrap();
        let (mut links, mut arrivals) = TcpLinks::new();
        links.send(remote, b"first");
        links.send(remote, &[7u8; 1500]);
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut got = vec![0u8; 2 + 5 + 2 + 1500];
        conn.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..7], b"\x00\x05first");
        assert_eq!(&got[7..9], &1500u16.to_be_bytes());
        assert!(got[9..].iter().all(|&b| b == 7));
        // Two packets in one write, the second split across two.
        conn.write_all(b"\x00\x03abc\x00\x04de").await.unwrap();
        conn.write_all(b"fg").await.unwrap();
        let a = arrivals.recv().await.unwrap();
        let b = arrivals.recv().await.unwrap();
        assert_eq!(a, (remote, b"abc".to_vec()));
        assert_eq!(b, (remote, b"defg".to_vec()));
        // The server drops the connection: the next packet opens a new one.
        drop(conn);
        let started = std::time::Instant::now();
        while !links.links[&remote].is_closed() {
            assert!(started.elapsed() < Duration::from_secs(5));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        links.send(remote, b"again");
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut got = [0u8; 7];
        conn.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"\x00\x05again");
    }
}
